"""Apache Beam jobs of nima_tf."""
