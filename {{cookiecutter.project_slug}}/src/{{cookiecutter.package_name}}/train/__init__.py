"""Training: the recipe (config -> data -> model -> train -> eval -> manifest), checkpoints."""
