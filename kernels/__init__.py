"""Indicator math: numpy arrays in, numpy arrays out. No I/O, no Ray, no pandas.

Each indicator family has a batch function and an incremental ``*State`` class of the same
name whose updates reproduce the batch result's last value.
"""
