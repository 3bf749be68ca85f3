from r1jax.data import templates

PAPER_TEXT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think>...</think> and <answer>...</answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>. User: prompt. Assistant:")


def test_r1_zero_is_the_paper_text_with_the_prompt_substituted():
  assert templates.r1_zero("prompt") == PAPER_TEXT
  assert templates.apply_template("r1_zero", "What is 2+3?") == PAPER_TEXT.replace(
      "User: prompt.", "User: What is 2+3?.")


def test_chat_template_ends_at_the_assistant_turn():
  text = templates.apply_template("chat", "Q?")
  assert "<|im_start|>user\nQ?<|im_end|>\n" in text
  assert text.endswith("<|im_start|>assistant\n")


def test_unknown_template_names_the_known_ones():
  try:
    templates.apply_template("nope", "x")
  except ValueError as e:
    assert "r1_zero" in str(e) and "chat" in str(e)
  else:
    raise AssertionError("expected ValueError")
