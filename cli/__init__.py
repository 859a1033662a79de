"""Thin click front ends: parse arguments, call one library function, print the result."""
