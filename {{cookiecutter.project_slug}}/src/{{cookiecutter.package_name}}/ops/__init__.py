"""Operations around the pipeline: launch backends, training image, artifact store, tracking."""
