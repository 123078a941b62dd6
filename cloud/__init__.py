"""The central service: ingest, store, fuse, invert, alert, follow events through.

Never imports ``gateway``.
"""
