"""Labelled request data: per-source label maps (`sources/`), the default set's build (`build`), the
one reader and validator of users' labelled files (`dataset`), the data card (`card`), label sets.
"""
