"""Checkout-only helpers around nanobark's converter: its command line, and random weights with the real layout."""
