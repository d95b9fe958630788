"""Backend agents: one interface, one implementation per backend family."""
