"""The dataset written for qwenkits role-play benchmark (package data: characters and dialogues as YAML)."""
