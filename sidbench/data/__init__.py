"""Inputs: image folders and arrays, prompt lists, and the resize chains before a network."""
