"""DP engines: each turns (query, metadata, data) into (result, privacy cost) behind one shape.

An engine works in two steps so that spending happens in between, never after touching data:
``plan`` checks the query and computes its exact cost from metadata alone; ``execute`` runs
a plan on the rows.
"""
