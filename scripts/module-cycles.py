#!/usr/bin/env python3
"""Module import cycles in src/: `scripts/module-cycles.py [SRC] [top|file]`.

Reads every `crate::` and `super::` path (test modules left out), maps it to the module that
defines it, and prints the strongly connected components of that graph with their edges: `top`
by top-level module (src/jwt, src/exchange, ...), `file` by file. The layout keeps both at 0
cycles: a lower layer never imports a higher one. Exits 1 when there is a cycle."""
import os,re,sys,collections
root=sys.argv[1] if len(sys.argv)>1 else 'src'
level=sys.argv[2] if len(sys.argv)>2 else 'top'
def modpath(f):
    p=os.path.relpath(f,root)[:-3].split('/')
    if p[-1] in('mod','lib','main'): p=p[:-1]
    return p
files=[]
for d,_,fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'): files.append(os.path.join(d,f))
edges=collections.defaultdict(set)
def key(p):
    if level=='top': return p[0] if p else 'lib'
    return '::'.join(p) or 'lib'
for f in files:
    mp=modpath(f)
    if f.endswith('main.rs'): continue
    text=open(f).read()
    # drop test modules
    text=re.split(r'#\[cfg\(test\)\]\s*mod tests',text)[0]
    refs=set()
    for m in re.finditer(r'crate::((?:[a-z_0-9]+::)*[a-z_0-9]+)',text):
        refs.add(tuple(m.group(1).split('::')))
    for m in re.finditer(r'super::((?:[a-z_0-9]+::)*[a-z_0-9]+)',text):
        base=mp[:-1] if not f.endswith('mod.rs') else mp[:-1]
        refs.add(tuple(base+m.group(1).split('::')))
    src=key(mp)
    for r in refs:
        r=list(r)
        # find longest existing module prefix
        while r and not (os.path.exists(os.path.join(root,*r)+'.rs') or os.path.exists(os.path.join(root,*r,'mod.rs'))):
            r=r[:-1]
        if not r: continue
        dst=key(r)
        if level=='top' and dst==src: continue
        if dst!=src: edges[src].add(dst)
# tarjan
index={};low={};st=[];on=set();sccs=[];i=[0]
def sc(v):
    index[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in index: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        c=[]
        while True:
            w=st.pop();on.discard(w);c.append(w)
            if w==v:break
        sccs.append(c)
sys.setrecursionlimit(10000)
nodes=set(edges)|{x for s in edges.values() for x in s}
for v in sorted(nodes):
    if v not in index: sc(v)
cyc=[c for c in sccs if len(c)>1]
print(f"{level}: {len(nodes)} modules, {sum(len(s) for s in edges.values())} edges, {len(cyc)} cycles")
for c in cyc: print("  ",sorted(c))
for c in cyc:
    for a in sorted(c):
        for b in sorted(edges[a]):
            if b in c: print(f"    {a} -> {b}")
sys.exit(1 if cyc else 0)
