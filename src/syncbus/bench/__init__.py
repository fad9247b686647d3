"""Benchmarks shipped with syncbus (``syncbus bench ...``).

Each measures syncbus and a plain confluent-kafka baseline doing the same work in
the same run, repeats both, and reports medians and their ratio: the machines we
run on are shared and noisy, so a lone figure means little.
"""
