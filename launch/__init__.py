"""Launchers that submit nima_tf's jobs to Google Cloud (Dataflow, Vertex AI)."""
