"""Routing: where each read goes (:mod:`.select`), what happens when a replica fails under a
query (:mod:`.fallback`), and the per-process counts of both (:mod:`.stats`)."""
