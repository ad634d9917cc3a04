"""Per-chapter experiment code: protocols, tables, sweeps (the method modules hold the papers' methods)."""
