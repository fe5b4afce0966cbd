#!/usr/bin/env python3
"""Renders chat templates with Python's Jinja2 configured as Hugging Face transformers configures it
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols; tojson = json.dumps with ensure_ascii=False;
raise_exception; strftime_now on a fixed clock, 2024-07-26 10:30:00) and writes the fixtures Tova's tests compare
against. Needs python3-jinja2 (Debian) only when the fixtures are regenerated, never at test time.

Usage: python3 make_template_fixtures.py ../../../shared/templates ../../tests/Tova.Tests/Templates/Fixtures
Writes: real-templates.json (each *.jinja x a few conversations: the output, or the template's error) and
test-chat-template.jinja2.json (llama.cpp's cases rendered by Jinja2 with llama.cpp's harness: a system message is
merged into the first user message when the template drops it, a leading BOS and a trailing EOS are stripped).
"""
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime.datetime(2024, 7, 26, 10, 30, 0)


class Raised(Exception):
    pass


def environment():
    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters['tojson'] = tojson
    env.globals['raise_exception'] = raise_exception
    env.globals['strftime_now'] = strftime_now
    return env


ENV = environment()

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city — in °C or °F.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. \"Paris\""},
                "unit": {"type": "string", "description": "The unit", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "What to look for"}, "limit": {"type": "integer", "description": "How many results", "default": 5}}, "required": ["query"]},
    },
}

BASIC = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "Hello! Who are you?"},
    {"role": "assistant", "content": "I am an assistant, here to help."},
    {"role": "user", "content": "  Tell me a joke about <tags> & \"quotes\"  "},
    {"role": "assistant", "content": "Why did the tag close? It needed </closure>."},
    {"role": "user", "content": "Another one, in français: çà et là ✓"},
]

TOOLS = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a1b2c3d4e", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
    {"role": "tool", "tool_call_id": "a1b2c3d4e", "name": "get_weather", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"},
    {"role": "assistant", "content": "It is 21.5 °C and clear in Paris."},
    {"role": "user", "content": "Thanks! And in Tokyo?"},
]


def cases_for(source):
    no_system = [m for m in BASIC if m["role"] != "system"]
    yield "basic", {"messages": BASIC, "add_generation_prompt": True}
    yield "basic_no_generation_prompt", {"messages": BASIC[:5], "add_generation_prompt": False}
    yield "no_system", {"messages": no_system, "add_generation_prompt": True}
    if "tools" in source or "tool_calls" in source:
        yield "tools", {"messages": TOOLS, "tools": [WEATHER_TOOL, SEARCH_TOOL], "add_generation_prompt": True}
        yield "tool_calls_without_tools", {"messages": TOOLS, "add_generation_prompt": True}
        string_args = [dict(m, tool_calls=[dict(c, function=dict(c["function"], arguments=json.dumps(c["function"]["arguments"])))
                                           for c in m["tool_calls"]]) if "tool_calls" in m else m for m in TOOLS]
        yield "tools_string_arguments", {"messages": string_args, "tools": [WEATHER_TOOL, SEARCH_TOOL], "add_generation_prompt": True}


def extras_for(name):
    """Variables a template needs beyond the standard ones (firefunction reads its own)."""
    if "firefunction" in name:
        return {"functions": json.dumps([t["function"] for t in [WEATHER_TOOL, SEARCH_TOOL]], indent=2), "datetime": "2024-07-26 10:30"}
    return {}


def render(source, context):
    try:
        return {"output": ENV.from_string(source).render(**context)}
    except Raised as e:
        return {"raised": str(e)}
    except Exception as e:  # a Python error inside the template (a type error, say)
        return {"error": f"{type(e).__name__}: {e}"}


def real_templates(template_dir):
    out = []
    for name in sorted(os.listdir(template_dir)):
        if not name.endswith(".jinja"):
            continue
        source = open(os.path.join(template_dir, name), encoding="utf-8").read()
        for case, context in cases_for(source):
            context = dict(context, bos_token="<s>", eos_token="</s>", **extras_for(name))
            out.append(dict({"template": name, "case": case, "context": context}, **render(source, context)))
    return out


def llama_cpp_cases(fixture):
    """llama.cpp's harness around the template (minja's polyfills): a template that drops or refuses a system message
    gets it merged into the first user message ("system\\nuser"); a rendering loses a leading BOS and a trailing EOS."""
    data = json.load(open(fixture, encoding="utf-8"))
    result = {}
    for case in data["cases"]:
        if not case["supported_with_jinja"]:
            continue
        src, bos, eos = case["template"], case["bos_token"], case["eos_token"]
        messages = data["conversation"]
        probe = render(src, {"messages": [{"role": "system", "content": "<System Needle>"}, {"role": "user", "content": "Hey"}],
                             "add_generation_prompt": False, "bos_token": bos, "eos_token": eos})
        if "<System Needle>" not in probe.get("output", ""):
            merged, pending = [], None
            for m in messages:
                if m["role"] == "system":
                    pending = m["content"]
                    continue
                if m["role"] == "user" and pending is not None:
                    m = dict(m, content=pending + "\n" + m["content"])
                    pending = None
                merged.append(m)
            messages = merged
        r = render(src, {"messages": messages, "add_generation_prompt": True, "bos_token": bos, "eos_token": eos})
        text = r.get("output")
        if text is not None and bos and text.startswith(bos):
            text = text[len(bos):]
        if text is not None and eos and text.endswith(eos):
            text = text[:-len(eos)]
        result[case["name"]] = text if text is not None else r
    return result


def main(template_dir, fixture_dir):
    with open(os.path.join(fixture_dir, "real-templates.json"), "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "now": FIXED_NOW.isoformat(), "cases": real_templates(template_dir)}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(fixture_dir, "test-chat-template.jinja2.json"), "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "outputs": llama_cpp_cases(os.path.join(fixture_dir, "test-chat-template.json"))}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
