"""Runtime backends behind one interface (base.Backend)."""
