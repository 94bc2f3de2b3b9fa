"""Keep an iso-prod Dolibarr sandbox re-seeded from prod, guarded and armed for its API agent."""
