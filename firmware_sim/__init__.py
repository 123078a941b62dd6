"""Simulated devices that speak the real protocols, and the synthetic world they measure.

Imports only ``protocols``.
"""
