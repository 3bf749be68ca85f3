import pytest

from r1jax.config import ConfigError, from_dict
from r1jax.data.config import DataConfig


def test_defaults_validate_and_lists_become_tuples():
  config = from_dict(DataConfig, {"type_weights": [["math", 3], ["code", 1]],
                                  "procedural_difficulties": [1, 4]})
  assert config.type_weights == (("math", 3), ("code", 1))
  assert config.procedural_difficulties == (1, 4)
  hash(config)


@pytest.mark.parametrize("values, key", [
    ({"datasets": ["r1_nope"]}, "data.datasets[0]"),
    ({"type_weights": [["music", 1.0]]}, "data.type_weights[0][0]"),
    ({"type_weights": [["math", 0.0]]}, "data.type_weights[0][1]"),
    ({"procedural_difficulties": [6]}, "data.procedural_difficulties[0]"),
    ({"template": "plain"}, "data.template"),
    ({"num_epochs": 0.0}, "data.num_epochs"),
    ({"worker_count": -1}, "data.worker_count"),
    ({"max_prompt_len": 0}, "data.max_prompt_len"),
    ({"questions_per_stepp": 8}, "data.questions_per_stepp"),
    ({"procedural_kinds": ["chain_sums"]}, "data.procedural_kinds"),
    ({"procedural_types": ["math"], "procedural_kinds": ["sequence"]}, "data.procedural_kinds"),
])
def test_bad_values_name_their_key(values, key):
  with pytest.raises(ConfigError) as info:
    from_dict(DataConfig, values, prefix="data")
  assert info.value.key == key
