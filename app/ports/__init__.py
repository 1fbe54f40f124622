"""Ports: the interfaces the states depend on. Adapters in ``app.adapters`` implement them; tests
implement them with fakes (``tests/fakes.py``)."""
