"""Search: query-time retrieval legs and their fusion."""
