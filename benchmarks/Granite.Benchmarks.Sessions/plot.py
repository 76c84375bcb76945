"""Draws docs/session-reuse.png from the benchmark JSON with the standard library only (zlib PNG, 3x5 digit font).
Left: time to first token (ms, log scale) vs history tokens, red = no reuse, blue = reuse.
Right: per-session state (MiB) at each context length, blue = hybrid (H-Tiny shape), red = dense (Micro shape)."""
import json, math, struct, sys, zlib

data = json.load(open(sys.argv[1]))
out = sys.argv[2]
W, H = 900, 380
img = [[(255, 255, 255)] * W for _ in range(H)]
FONT = {'0': '111101101101111', '1': '010110010010111', '2': '111001111100111', '3': '111001111001111', '4': '101101111001001',
        '5': '111100111001111', '6': '111100111101111', '7': '111001001001001', '8': '111101111101111', '9': '111101111001111',
        '.': '000000000000010', 'K': '101101110101101', 'x': '000101010101000'}

def px(x, y, c):
    if 0 <= x < W and 0 <= y < H: img[y][x] = c

def line(x0, y0, x1, y1, c, w=2):
    n = max(abs(x1 - x0), abs(y1 - y0), 1)
    for i in range(n + 1):
        x = round(x0 + (x1 - x0) * i / n); y = round(y0 + (y1 - y0) * i / n)
        for dx in range(w):
            for dy in range(w): px(x + dx, y + dy, c)

def rect(x0, y0, x1, y1, c):
    for y in range(min(y0, y1), max(y0, y1)):
        for x in range(x0, x1): px(x, y, c)

def text(x, y, s, c=(0, 0, 0), k=2):
    for ch in s:
        g = FONT.get(ch)
        if g:
            for i, b in enumerate(g):
                if b == '1': rect(x + (i % 3) * k, y + (i // 3) * k, x + (i % 3) * k + k, y + (i // 3) * k + k, c)
        x += 4 * k

RED, BLUE, GREY = (200, 40, 40), (40, 80, 200), (120, 120, 120)
# Left panel: TTFT
rows = data['ttft']['rows']
L, R, T, B = 60, 430, 20, 330
line(L, B, R, B, GREY, 1); line(L, T, L, B, GREY, 1)
xs = [r['history'] for r in rows]
ymin = math.log10(min(r['ttft_ms_reuse'] for r in rows) / 2); ymax = math.log10(max(r['ttft_ms_no_reuse'] for r in rows) * 2)
fx = lambda h: L + (R - L) * h / max(xs)
fy = lambda v: B - (B - T) * (math.log10(v) - ymin) / (ymax - ymin)
for e in range(math.floor(ymin), math.ceil(ymax) + 1):
    v = 10 ** e
    if ymin <= e <= ymax:
        line(L - 4, round(fy(v)), L, round(fy(v)), GREY, 1); text(4, round(fy(v)) - 5, str(v))
for h in xs:
    line(round(fx(h)), B, round(fx(h)), B + 4, GREY, 1); text(round(fx(h)) - 12, B + 10, str(h))
for key, c in (('ttft_ms_no_reuse', RED), ('ttft_ms_reuse', BLUE)):
    pts = [(round(fx(r['history'])), round(fy(r[key]))) for r in rows]
    for a, b in zip(pts, pts[1:]): line(*a, *b, c)
    for p in pts: rect(p[0] - 3, p[1] - 3, p[0] + 4, p[1] + 4, c)
text(R - 90, T + 5, str(rows[-1]['speedup']) + 'x', BLUE)
# Right panel: memory
mem = data['memory']['rows']
L2, R2 = 520, 880
line(L2, B, R2, B, GREY, 1); line(L2, T, L2, B, GREY, 1)
top = max(r['micro_session_bytes'] for r in mem) / 1048576
scale = lambda mib: B - (B - T) * mib / top
step = 10 ** math.floor(math.log10(top))
v = 0
while v <= top:
    line(L2 - 4, round(scale(v)), L2, round(scale(v)), GREY, 1); text(L2 - 50, round(scale(v)) - 5, str(int(v))); v += step
gw = (R2 - L2) // len(mem)
for i, r in enumerate(mem):
    x = L2 + i * gw + gw // 6
    rect(x, round(scale(r['h_tiny_session_bytes'] / 1048576)), x + gw // 3, B, BLUE)
    rect(x + gw // 3, round(scale(r['micro_session_bytes'] / 1048576)), x + 2 * gw // 3, B, RED)
    text(x + 5, B + 10, str(r['context'] // 1024) + 'K')

raw = b''.join(b'\x00' + bytes(v for p in row for v in p) for row in img)
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
open(out, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', W, H, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))
print('wrote', out)
