"""The project's own train/validation split of the benchmark's developers' half.

A frame is in the validation split when the first 8 hex digits of sha1("<set>/<image>") are divisible by 5
(about 20%). `gatehouse eval --split val` uses the same rule (src/eval.rs), so reported figures never come
from images a model was trained on.
"""
import hashlib


def is_val(set_name: str, image: str) -> bool:
    h = hashlib.sha1(f"{set_name}/{image}".encode()).hexdigest()
    return int(h[:8], 16) % 5 == 0
