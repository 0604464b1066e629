"""The forgetting probe: a model's loss on fixed, general English text that has nothing to do with any
person's material.

A personal adapter should change what the base knows about its person, not how well it reads and
writes ordinary English. ``general_text_loss`` scores the paragraphs below (every token labelled, as
a knowledge-text row is) with ``pipeline.evaluate.eval_loss``; the eval gate compares the candidate's
number with the base model's (``gate.max_forgetting``), and ``plora eval`` shows it.

The text is plora's own, fixed here so the number means the same on every machine and every month:
everyday explanations of the kind a base model reads in pretraining (weather, cooking, history,
arithmetic, a letter). Changing it changes every recorded probe loss: don't.
"""

from __future__ import annotations

from typing import Any

GENERAL_TEXT: tuple[str, ...] = (
    "Clouds form when warm, moist air rises and cools. Cooler air cannot hold as much water vapour, so "
    "some of the vapour condenses into tiny droplets around specks of dust or salt. Billions of these "
    "droplets together scatter sunlight, which is why a cloud looks white from the side and grey from "
    "below. When the droplets grow heavy enough to overcome the rising air, they fall as rain.",
    "To make a simple loaf of bread, mix flour, water, salt and a little yeast until the dough comes "
    "together. Knead it for about ten minutes, until it feels smooth and springs back when pressed. "
    "Leave it covered in a warm place for an hour or two, until it has doubled in size, then shape it, "
    "let it rise once more and bake it in a hot oven until the crust is brown and the base sounds hollow.",
    "The printing press changed Europe in the fifteenth century. Before it, books were copied by hand, "
    "which made them rare and expensive. Movable metal type allowed a workshop to print hundreds of "
    "identical pages in a day. Within a few decades, printed books, pamphlets and maps spread ideas "
    "about religion, science and politics much faster than any government could control.",
    "A fraction describes a part of a whole. In the fraction three quarters, the bottom number says "
    "that the whole is divided into four equal parts, and the top number says that we take three of "
    "them. To add two fractions with different bottom numbers, first rewrite them so that they share "
    "the same bottom number, then add the top numbers and simplify the result if you can.",
    "Dear Aunt Margaret, thank you so much for the book you sent for my birthday. I started reading it "
    "on the train and nearly missed my stop. The weather here has finally turned warm, and the garden "
    "is full of tulips. We hope you can visit us in the summer, when the days are long and the lake is "
    "warm enough for swimming. With love from all of us.",
    "Many birds travel thousands of kilometres each year between their summer and winter homes. They "
    "find their way using the position of the sun and the stars, the shape of coastlines and rivers, "
    "and even the Earth's magnetic field. Young birds often make their first journey without their "
    "parents, which suggests that much of this knowledge is inherited rather than learned.",
    "Regular exercise does not have to mean a gym. A brisk walk of half an hour most days, cycling "
    "instead of driving for short trips, or taking the stairs rather than the lift all strengthen the "
    "heart and lungs. People who stay active tend to sleep better and feel less anxious, and the "
    "benefits begin within a few weeks of starting.",
    "The library opens at nine in the morning and closes at six in the evening, except on Sundays, when "
    "it is closed all day. Members may borrow up to eight books at a time for three weeks. Books can be "
    "renewed twice, online or at the front desk, as long as no one else has reserved them.",
)


def general_rows() -> list[dict[str, Any]]:
    """The probe as knowledge-text rows (``text``; every token carries loss)."""
    return [{"text": paragraph, "source": "general"} for paragraph in GENERAL_TEXT]


def general_text_loss(model: Any, tokenizer: Any, *, max_length: int = 1024, batch_size: int = 4) -> float | None:
    """Mean NLL per token of ``model`` on the probe text (None when nothing could be scored)."""
    from pipeline.evaluate import eval_loss

    return eval_loss(model, general_rows(), tokenizer, max_length=max_length, batch_size=batch_size).loss
