"""Wire formats only: pure encode/decode, no I/O, no clocks.

Imported by every other package; imports none of them.
"""
