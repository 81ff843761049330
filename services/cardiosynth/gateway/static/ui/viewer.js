// The volume viewer: one NiiVue instance per canvas, an image with its label volume as overlay.
//
// NiiVue comes from the vendored UMD bundle (vendor/niivue, `scripts/refresh-niivue.sh`), loaded by a
// classic script before this module, so it is the global `niivue`. The page fetches each NIfTI file
// itself through the signed link the API gave (same origin for the embedded mode's local storage;
// the object store's public endpoint in compose, allowed by the CSP's connect-src) and hands the
// bytes to NiiVue; NiiVue makes no request of its own.

// ACDC labels: 1 RV cavity, 2 LV myocardium, 3 LV cavity; the preview PNG's colours.
const LABELS = {
  R: [0, 31, 44, 214],
  G: [0, 119, 160, 39],
  B: [0, 180, 44, 40],
  A: [0, 255, 255, 255],
  I: [0, 1, 2, 3],
  labels: ["background", "RV cavity", "LV myocardium", "LV cavity"],
};

// Object key -> Promise<ArrayBuffer>: moving the sliders back and forth fetches each file once.
const cache = new Map();
const CACHE_MAX = 48;

export function fetchVolume(key, url) {
  if (cache.has(key)) return cache.get(key);
  const pending = (async () => {
    let response;
    try {
      response = await fetch(url, { credentials: "omit", referrerPolicy: "no-referrer" });
    } catch {
      const where = new URL(url, location.href);
      const hint =
        where.origin === location.origin
          ? ""
          : ` (the link points at ${where.origin}, another origin than this page's ${location.origin}:` +
            " open the page at the gateway's public address, CARDIOSYNTH_PUBLIC_URL)";
      throw new Error(`could not fetch ${key.split("/").pop()}${hint}`);
    }
    if (!response.ok) throw new Error(`${key.split("/").pop()}: HTTP ${response.status}`);
    return response.arrayBuffer();
  })();
  pending.catch(() => cache.delete(key)); // a failed fetch is tried again next time
  cache.set(key, pending);
  while (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
  return pending;
}

// Signing out forgets the volumes of the key that fetched them.
export function clearCache() {
  cache.clear();
}

function voxelIndex(dims, x, y, z) {
  return x + y * dims[1] + z * dims[1] * dims[2];
}

export class Viewer {
  static async create(canvas, onLocation) {
    if (!globalThis.niivue || !globalThis.niivue.Niivue) throw new Error("NiiVue did not load");
    const viewer = new Viewer(canvas, onLocation);
    await viewer.nv.attachToCanvas(canvas);
    return viewer;
  }

  constructor(canvas, onLocation) {
    this.canvas = canvas;
    this.nv = new globalThis.niivue.Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [1, 0.85, 0, 0.3],
      crosshairWidth: 0, // no lines over the heart; a click still reports the voxel below it
      show3Dcrosshair: false,
      isColorbar: false,
      isOrientCube: false,
      dragAndDropEnabled: false,
      loadingText: "",
      logLevel: "error",
    });
    this.image = null;
    this.label = null;
    this.key = null;
    this.centre = null;
    this.axis = 2; // the voxel axis the slices are taken along (short-axis stacks: z)
    this.nv.onLocationChange = (data) => {
      if (!this.image || !data || !data.vox) return;
      const vox = data.vox.map((v) => Math.round(v));
      const at = (vol) => (vol ? vol.img[voxelIndex(vol.hdr.dims, vox[0], vox[1], vox[2])] : null);
      onLocation(this, { vox, slice: vox[this.axis], value: at(this.image), label: this.label ? at(this.label) : null });
    };
  }

  // Show an image (and its labels) under the grey-level window `window` ([min, max]; null: the image's
  // own robust range). A panel whose volume is already on screen only changes its window, if at all.
  async show(imageBytes, labelBytes, key, window = null) {
    if (this.key === key) {
      this.setWindow(window);
      return;
    }
    const { NVImage } = globalThis.niivue;
    const name = key.split("/").pop();
    // The file name tells NiiVue the format (.nii.gz); the bytes are already here.
    const image = await NVImage.loadFromUrl({ url: name, name, buffer: imageBytes, colormap: "gray" });
    let label = null;
    if (labelBytes) {
      const labelName = name.replace(/\.nii\.gz$/, "_gt.nii.gz");
      label = await NVImage.loadFromUrl({ url: labelName, name: labelName, buffer: labelBytes, colormap: "gray" });
      label.setColormapLabel(LABELS);
      // Drawn opaque into the overlay texture; the shown opacity is a uniform of the slice shader
      // (setOverlay), so the overlay switch and the opacity slider redraw without a refresh.
      label.opacity = 1;
    }
    // Both layers swapped in at once, then one GPU refresh: removeVolume and addVolume refresh the
    // textures after every call (four passes instead of one; seconds on a software renderer).
    this.ownWindow = [image.cal_min, image.cal_max]; // NiiVue's robust range of this image
    [image.cal_min, image.cal_max] = window ?? this.ownWindow;
    this.nv.volumes = label ? [image, label] : [image];
    this.nv.back = image;
    this.nv.overlays = label ? [label] : [];
    this.nv.updateGLVolume();
    this.image = image;
    this.label = label;
    this.key = key;
    this.centre = this.lvCentre();
    this.axis = 2;
    this.nv.setSliceType(this.sliceType(image));
  }

  window() {
    return this.image ? [this.image.cal_min, this.image.cal_max] : null;
  }

  setWindow(window) {
    if (!this.image) return;
    const [lo, hi] = window ?? this.ownWindow;
    if (this.image.cal_min === lo && this.image.cal_max === hi) return;
    this.image.cal_min = lo;
    this.image.cal_max = hi;
    this.nv.updateGLVolume(); // the window is applied when the layers are blended into the textures
  }

  // The 2D view whose plane is perpendicular to the voxel axis of the stack: axial for a stack
  // whose z runs head-foot, coronal or sagittal otherwise (NiiVue reorients to the nearest RAS).
  sliceType(image) {
    const perm = image.permRAS || [1, 2, 3];
    const ras = perm.findIndex((p) => Math.abs(p) === this.axis + 1);
    return [this.nv.sliceTypeSagittal, this.nv.sliceTypeCoronal, this.nv.sliceTypeAxial][ras] ?? this.nv.sliceTypeAxial;
  }

  sliceCount() {
    return this.image ? this.image.hdr.dims[this.axis + 1] : 1;
  }

  slice() {
    if (!this.image) return 0;
    return Math.round(this.nv.frac2vox(this.nv.scene.crosshairPos)[this.axis]);
  }

  // The middle of the slices that hold the LV (cavity or myocardium), as the preview PNG picks it.
  middleSlice() {
    const count = this.sliceCount();
    if (!this.label) return Math.floor(count / 2);
    const dims = this.label.hdr.dims;
    const plane = dims[1] * dims[2];
    const present = [];
    for (let z = 0; z < dims[3]; z++) {
      const slab = this.label.img.subarray(z * plane, (z + 1) * plane);
      if (slab.some((v) => v === 2 || v === 3)) present.push(z);
    }
    return present.length ? present[Math.floor(present.length / 2)] : Math.floor(count / 2);
  }

  setSlice(k) {
    if (!this.image) return;
    const vox = this.nv.frac2vox(this.nv.scene.crosshairPos);
    vox[this.axis] = k;
    this.nv.scene.crosshairPos = this.nv.vox2frac(vox);
    this.nv.drawScene();
    this.canvas.dataset.slice = String(k); // which slice this panel shows (for tests and assistive tools)
  }

  // Zoom with the LV's centre p (mm; this panel's own unless given) in the middle of the view. NiiVue
  // draws a point q at z * q + pan (mm, zoom z); the middle of the unzoomed view is the volume's
  // centre m, so pan = m - z * p.
  setZoom(zoom, centre = null) {
    if (!this.image) return;
    const m = this.nv.frac2mm([0.5, 0.5, 0.5]);
    const p = centre || this.centre || m;
    this.nv.setPan2Dxyzmm([m[0] - zoom * p[0], m[1] - zoom * p[1], m[2] - zoom * p[2], zoom]);
  }

  lvCentre() {
    if (!this.label) return null;
    const dims = this.label.hdr.dims;
    const sum = [0, 0, 0];
    let count = 0;
    const img = this.label.img;
    for (let i = 0; i < img.length; i++) {
      if (img[i] !== 2 && img[i] !== 3) continue;
      sum[0] += i % dims[1];
      sum[1] += Math.floor(i / dims[1]) % dims[2];
      sum[2] += Math.floor(i / (dims[1] * dims[2]));
      count++;
    }
    if (!count) return null;
    return this.nv.frac2mm(this.nv.vox2frac(sum.map((v) => v / count)));
  }

  // NiiVue's setOpacity re-blends every layer into the textures (updateGLVolume: seconds on a software
  // renderer, for each panel); overlayAlphaShader scales the overlay's alpha when a slice is drawn.
  setOverlay(opacity) {
    if (this.nv.overlayAlphaShader === opacity) return;
    this.nv.overlayAlphaShader = opacity;
    if (this.image) this.nv.drawScene();
  }
}
