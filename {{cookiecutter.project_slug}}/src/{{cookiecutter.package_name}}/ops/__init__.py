"""Operations around the pipeline: launch backends, training image, artifact store, tracking,
and what a workflow needs (runner rule, doctor, detached jobs, training inputs)."""
