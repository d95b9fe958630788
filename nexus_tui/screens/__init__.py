"""Full screens (one per view, plus detail screens) and modal dialogs."""
