"""What the certibloc services say to each other, and the referential they share.

This package imports nothing from ``services``: it is the published contract.
"""
