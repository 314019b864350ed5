"""Alcor: a cloud-native SDN control plane with a Neutron-compatible API."""

__version__ = "0.1.0"
