"""Long-document QA examples from a text of short stories, in SCROLLS / ZeroSCROLLS JSONL.

Each example starts at a paragraph that introduces a character ("... named X"), runs on for at least 1,200
characters of the following paragraphs, and asks for X. With --cloze the question is written into the input as the
start of a sentence the model completes (ZeroSCROLLS style: no `question` field), which even a tiny story model can
attempt; without it the example has a `question` field.

usage: python3 make_names_jsonl.py TEXT OUT.jsonl COUNT [--cloze]
"""
import json, re, sys

text, out_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
cloze = "--cloze" in sys.argv[4:]
paras = [p.strip() for p in re.split(r"\n\s*\n", open(text, encoding="utf-8").read()) if p.strip()]
out, i = [], 0
while i < len(paras) and len(out) < count:
    m = re.search(r"named (\w+)", paras[i])
    if not m:
        i += 1
        continue
    doc, j = paras[i], i + 1
    while len(doc) < 1200 and j < len(paras):
        doc += "\n\n" + paras[j]
        j += 1
    if cloze:
        out.append({"input": doc + "\n\nOnce upon a time, there was a little friend named", "outputs": [m.group(1)]})
    else:
        out.append({"input": doc, "question": "What is the name of the character introduced at the beginning?", "outputs": [m.group(1)]})
    i = j
with open(out_path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(e) + "\n" for e in out)
print(len(out))
