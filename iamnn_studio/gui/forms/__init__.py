"""The Train tab's forms: dataset, model and training settings that together edit one RunConfig."""
