"""The embedding worker and search: their own process (``trace-summaries embedding-worker`` / ``search``).

``consumer`` reads embedding requests from Kafka, ``embedder`` turns texts into vectors, and
``document_embeddings`` stores them in ClickHouse, where ``search`` finds the nearest summaries.
"""
