"""The design scans behind the constants of aetool/texture.py (GUIDE_WEIGHT, FINAL_RADIUS,
STRUCTURE_SIGMA, the search passes): hole PSNR and gradient-energy ratio of `synthesize` with the
given settings, on training photos only (DATA/train/bsd200, files 10 to 10+N by name), one box and
one thick-stroke mask each (aetool.maskgen.protocol_mask, index 1000 + i), guided by the smooth fill.

    python benchmarks/texture_params.py 6 '[{"gw": 1.0}, {"gw": 2.0}, {"gw": 2.0, "final_radius": 1}]'

Each setting is a JSON object of `synthesize` keyword arguments; "gw" sets texture.GUIDE_WEIGHT
(1.0 when left out).
Printed per setting: mean hole PSNR (dB, float), mean gradient-energy ratio (this script's own
forward differences, as in docs/protocol.md) and the wall time.
"""
import sys, os, time, numpy as np, json
from PIL import Image
from aetool.maskgen import protocol_mask
from aetool.tasks.inpaint import Inpainter
from aetool import texture
from pathlib import Path
d=str(Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'train' / 'bsd200'); files=sorted(os.listdir(d))
inp=Inpainter(fill='smooth')
def gE(x,m):
    gx=np.zeros_like(x); gy=np.zeros_like(x)
    gx[:, :-1]=x[:,1:]-x[:,:-1]; gy[:-1]=x[1:]-x[:-1]
    return ((gx**2+gy**2).sum(-1)[m]).sum()
def psnr(a,b,m): return 10*np.log10(1/np.mean((a[m]-b[m])**2))
cases=[]
for i in range(10,10+int(sys.argv[1])):
    clean=np.asarray(Image.open(f'{d}/{files[i]}').convert('RGB')).astype(np.float32)/255
    for k in ['box','thick']:
        m=protocol_mask(k,*clean.shape[:2],1000+i); x=clean.copy(); x[m]=0
        sm,_=inp(x,m); cases.append((clean,m,x,sm))
configs=json.loads(sys.argv[2])
print('smooth', np.mean([psnr(c,s,m) for c,m,x,s in cases]))
for cfg in configs:
    texture.GUIDE_WEIGHT=cfg.pop('gw',1.0)
    t=time.time(); r=[]
    for c,m,x,s in cases:
        o=texture.synthesize(x,m,s,seed=0,**{k:tuple(v) if isinstance(v,list) else v for k,v in cfg.items()})
        r.append((psnr(c,o,m),gE(o,m)/gE(c,m)))
    print(texture.GUIDE_WEIGHT, cfg, '%.2f %.3f'%tuple(np.mean(r,0)), '%.1fs'%(time.time()-t), flush=True)
