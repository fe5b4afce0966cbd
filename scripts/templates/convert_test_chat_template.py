#!/usr/bin/env python3
"""Converts llama.cpp's tests/test-chat-template.cpp (../shared/templates) into a JSON fixture:
{"conversation": [{"role", "content"}...], "cases": [{"name", "template", "expected", "bos_token", "eos_token",
"supported_with_jinja"}]}, where "expected" is expected_output_jinja, or expected_output where that is empty.

Usage: python3 convert_test_chat_template.py ../../../shared/templates/test-chat-template.cpp > ../../tests/Tova.Tests/Templates/Fixtures/test-chat-template.json
"""
import json
import re
import sys

LITERAL = r'(?:u8)?"(?:[^"\\]|\\.)*"'
FIELD = re.compile(r'/\*\s*\.(\w+)=\s*\*/\s*((?:' + LITERAL + r'\s*)+|true|false)', re.S)


def unescape(body: str) -> str:
    out, i = [], 0
    simple = {'n': '\n', 't': '\t', 'r': '\r', '\\': '\\', '"': '"', "'": "'", '0': '\0', 'a': '\a', 'b': '\b', 'f': '\f', 'v': '\v', '?': '?'}
    raw = body.encode('utf-8')
    data = bytearray()
    while i < len(body):
        c = body[i]
        if c == '\\':
            e = body[i + 1]
            if e in simple:
                data += simple[e].encode()
                i += 2
            elif e == 'x':
                m = re.match(r'[0-9a-fA-F]+', body[i + 2:])
                data.append(int(m.group(0), 16))
                i += 2 + len(m.group(0))
            else:
                raise ValueError('unknown escape \\' + e)
        else:
            data += c.encode('utf-8')
            i += 1
    return data.decode('utf-8')


def literal_value(text: str):
    if text in ('true', 'false'):
        return text == 'true'
    parts = re.findall(LITERAL, text, re.S)
    return ''.join(unescape(p[p.index('"') + 1:-1]) for p in parts)


def main(path):
    src = open(path, encoding='utf-8').read()
    conv = src[src.index('std::vector<llama_chat_message> conversation'):]
    conv = conv[:conv.index('};')]
    conversation = [{'role': literal_value(r), 'content': literal_value(c)}
                    for r, c in re.findall(r'\{\s*(' + LITERAL + r')\s*,\s*(' + LITERAL + r')\s*\}', conv)]
    body = src[src.index('std::vector<TestCase> test_cases {'):]
    body = body[:body.index('\n    };')]
    cases = []
    for chunk in re.split(r'\n        \{\s*\n', body)[1:]:
        fields = {name: literal_value(value.strip()) for name, value in FIELD.findall(chunk)}
        cases.append({
            'name': fields['name'],
            'template': fields['template_str'],
            'expected': fields.get('expected_output_jinja') or fields['expected_output'],
            'bos_token': fields.get('bos_token', ''),
            'eos_token': fields.get('eos_token', ''),
            'supported_with_jinja': fields.get('supported_with_jinja', True),
        })
    json.dump({'source': 'llama.cpp tests/test-chat-template.cpp (MIT)', 'conversation': conversation, 'cases': cases},
              sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main(sys.argv[1])
