"""Flax models of the study's families, annotated with logical axis names."""
