"""Operations around the pipeline: where runs live, how jobs are launched, what a workflow needs."""
