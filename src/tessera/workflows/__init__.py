"""Workflows: what a command does from end to end, composed from the library's pieces.

* :mod:`~tessera.workflows.fit`: train from a fit config and save (local, or a runner the caller picks);
* :mod:`~tessera.workflows.compare`: fusion vs its unimodal baselines, trained alike and compared paired.
"""
