#!/usr/bin/env python3
"""Regenerates oracle_cases.json: renders each input of oracle_inputs.jsonl with the fixture's real Jinja chat template,
configured like Hugging Face apply_chat_template (sandboxed env, trim_blocks, lstrip_blocks, loopcontrols,
tojson = json.dumps(ensure_ascii=False)). Needs only python3 + jinja2. Run from the repository root."""
import json
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = 'tests/Granite.Extensions.AI.Tests/Chat/Oracle/'
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters['tojson'] = lambda x, **kwargs: json.dumps(x, ensure_ascii=False)
template = env.from_string(json.load(open('tests/TestData/tiny-h-moe/tokenizer_config.json'))['chat_template'])
cases = []
for line in open(HERE + 'oracle_inputs.jsonl', encoding='utf-8'):
    if not line.strip():
        continue
    case = json.loads(line)
    kwargs = {k: v for k, v in case['input'].items() if k in ('messages', 'tools', 'available_tools', 'documents')}
    text = template.render(add_generation_prompt=case['input'].get('add_generation_prompt', True), **kwargs)
    cases.append({'name': case['name'], 'input': case['input'], 'expected_text': text})
with open(HERE + 'oracle_cases.json', 'w', encoding='utf-8') as f:
    json.dump(cases, f, ensure_ascii=False, indent=1)
    f.write('\n')
