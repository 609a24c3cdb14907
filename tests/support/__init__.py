"""Shared test utilities: the offline environment (`env`), free ports (`ports`), a real `tierroute
serve` process (`server`), small real bundles (`bundles`), fake LLM providers and classifier
services (`fake_provider`, `fake_classifier`) and router policies (`policies`).
"""
