"""Validates a SARIF log against a JSON schema: validate.py SCHEMA LOG.

Exit 0 when valid, 1 with the errors listed, 3 when jsonschema is missing."""
import json
import sys

try:
    import jsonschema
except ImportError as e:
    print(f"jsonschema is missing ({e}): set KATA_REPRO_CDX_PYTHONPATH (.ci/run does)")
    sys.exit(3)
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
errors = sorted(jsonschema.validators.validator_for(schema)(schema).iter_errors(doc), key=str)
for e in errors:
    print(list(e.absolute_path), e.message)
sys.exit(1 if errors else 0)
