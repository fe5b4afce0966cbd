#!/usr/bin/env python3
"""Random templates from a small grammar (expressions, filters, tests, if/for/set/macro/filter blocks, loop variables,
loop controls, namespaces, whitespace control) rendered by Python's Jinja2 as transformers configures it; the output
(or the fact that Jinja2 fails) is the fixture Tova's differential test compares against.

Jinja2 reads a name as undefined inside a nested block when the enclosing scope assigns it later; Tova does not copy
that quirk, so the grammar assigns expressions only to a name it never reads ("w").

Usage: python3 make_random_fixtures.py ../../tests/Tova.Tests/Templates/Fixtures/random-templates.json [COUNT] [SEED]
"""
import json
import random
import sys

from make_template_fixtures import ENV

atoms = ["x","y","n","f","s","l","d","none","true","false","'a'","\"b c\"","''","0","1","2","-3","1.5","2.0","[1, 'x', none]","{'k': 1, 'role': 'user'}","(1, 2)",
 "l[0]","l[1:]","l[::-1]","l[-1]","d.k","d['role']","d.missing","s.upper()","s.split(',')","s.strip()","l|length","l|first","l|last","l|join('-')",
 "d|tojson","l|tojson","d.items()|list","d|items|list","range(3)","range(1, 7, 2)","s[1:3]","s[::-1]","n // 2","n % 3","n ** 2","f * 2","s ~ n",
 "l|select|list","l|reject('none')|list","[3,1,2]|sort","['b','A','a']|sort","['b','A','a']|unique|list","[1,2,3]|sum","'%s-%s'|format(n, s)","'{}'.format(n)",
 "s|title","s|capitalize","s|replace(',', ';')","x|default('dflt')","y|default('e', true)","n|string","'42'|int","'x'|int","3.7|int","n|float","-n|abs","2.5|round",
 "'  pad '|trim","'a\\nb'|indent(2)","s.startswith('a')","s.endswith(('x','b'))","'ab'*2","l+[9]","d.get('k')","d.get('zz', 0)","d.keys()|list","d.values()|list",
 "s|list","n|string|length","l|map('string')|join","[d, d]|map(attribute='k')|list","[d]|selectattr('k')|list","[d]|rejectattr('k', 'eq', 1)|list",
 "s.count('a')","s.find(',')","s.lstrip('a')","s.rstrip('c')","'x'.join(l|map('string'))","(n > 1) and s","none or []","not l"]
ops = ["+","-","*","/","//","%","~","==","!=","<",">=","and","or","in","not in"]
tests = ["defined","undefined","none","string","number","integer","float","mapping","iterable","sequence","boolean","odd","even","divisibleby 2","eq 1","true","false","lower","upper"]


def expr(d):
    r = random.random()
    if d <= 0 or r < 0.35: return random.choice(atoms)
    if r < 0.6: return f"({expr(d-1)} {random.choice(ops)} {expr(d-1)})"
    if r < 0.7: return f"({expr(d-1)} if {expr(d-1)} else {expr(d-1)})"
    if r < 0.8: return f"({expr(d-1)} is {random.choice(['', 'not '])}{random.choice(tests)})"
    if r < 0.9: return f"not {expr(d-1)}"
    return f"({expr(d-1)})|{random.choice(['upper','lower','length','string','first','last','list','tojson','trim','reverse|list','int','abs','title','wordcount','length > 1'])}"


def ws(): return random.choice(["", "", "-"]) 


def stmt(d):
    r = random.random()
    pad = random.choice(["", "\n", "  ", "\n  ", " x\n"])
    if d <= 0 or r < 0.3: return pad + random.choice([f"{{{{{ws()} {expr(2)} {ws()}}}}}", "text", "{# c #}", "\n"])
    if r < 0.45: return f"{pad}{{%{ws()} if {expr(2)} {ws()}%}}{body(d-1)}{{% elif {expr(1)} %}}{body(d-1)}{{% else %}}{body(d-1)}{{%{ws()} endif {ws()}%}}"
    if r < 0.6:
        tgt = random.choice(["i", "k, v"])
        it = random.choice(["l", "d.items()", "range(4)", "s", "[]", "x", "d"]) if tgt == "i" else random.choice(["d.items()", "d|items", "[(1,2),(3,4)]"])
        extra = random.choice(["", "{{ loop.index }}", "{{ loop.first }}{{ loop.last }}", "{% if loop.index > 1 %}{% break %}{% endif %}", "{% if loop.first %}{% continue %}{% endif %}{{ loop.revindex }}", "{{ loop.previtem }}|{{ loop.nextitem }}", "{{ loop.cycle('a','b') }}"])
        return f"{pad}{{%{ws()} for {tgt} in {it} {ws()}%}}{extra}{body(d-1)}{{% else %}}E{{%{ws()} endfor {ws()}%}}"
    if r < 0.7: return f"{pad}{{% set w = {expr(2)} %}}"
    if r < 0.78: return f"{pad}{{% set ns = namespace(v=1) %}}{{% for i in range(3) %}}{{% set ns.v = ns.v + i %}}{{% endfor %}}{{{{ ns.v }}}}"
    if r < 0.86: return f"{pad}{{% macro m(a, b=2) %}}[{{{{ a }}}}{{{{ b }}}}{body(d-1)}]{{% endmacro %}}{{{{ m({expr(1)}) }}}}{{{{ m(1, b={expr(1)}) }}}}"
    if r < 0.93: return f"{pad}{{% set z %}}{body(d-1)}{{% endset %}}[{{{{ z }}}}]"
    return f"{pad}{{% filter upper %}}{body(d-1)}{{% endfilter %}}"


def body(d): return "".join(stmt(d) for _ in range(random.randint(0, 3)))


CONTEXT = {"x": "a,b", "n": 5, "f": 0.5, "s": "abc,def", "l": [1, "two", None, 3.5], "d": {"k": 1, "role": "user", "z": [1, 2]}}



def main(path, count, seed):
    random.seed(seed)
    cases = []
    for _ in range(count):
        template = body(3)
        try:
            cases.append({"template": template, "output": ENV.from_string(template).render(**CONTEXT)})
        except Exception:  # a syntax error, the template's raise_exception or a Python error while rendering
            cases.append({"template": template, "error": True})
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"seed": seed, "context": CONTEXT, "cases": cases}, f, ensure_ascii=False, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400, int(sys.argv[3]) if len(sys.argv) > 3 else 2024)
