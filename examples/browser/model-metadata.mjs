// Reads an exported model's metadata_props straight from the .onnx bytes, so the page needs no
// protobuf library: a ModelProto is a sequence of tagged fields, and metadata_props (field 14) holds
// key (1) / value (2) string pairs. Every other field is skipped by its wire type.

const METADATA_PROPS = 14;

function reader(bytes) {
  let pos = 0;
  // Lengths can exceed 2^31 bits of a JS shift, so varints are accumulated by multiplication.
  const varint = () => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      if (pos >= bytes.length) throw new Error('truncated protobuf varint');
      const b = bytes[pos++];
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
    }
  };
  const skip = (wireType) => {
    if (wireType === 0) varint();
    else if (wireType === 1) pos += 8;
    else if (wireType === 2) {
      const length = varint(); // read before `pos` is, since varint() moves it
      pos += length;
    }
    else if (wireType === 5) pos += 4;
    else throw new Error(`unsupported protobuf wire type ${wireType}`);
    if (pos > bytes.length) throw new Error('truncated protobuf field');
  };
  return { varint, skip, get pos() { return pos; }, set pos(p) { pos = p; }, done: () => pos >= bytes.length };
}

const utf8 = new TextDecoder();

/** The metadata_props of an ONNX ModelProto as a plain object (key → string value). */
export function readMetadataProps(bytes) {
  const r = reader(bytes);
  const props = {};
  while (!r.done()) {
    const tag = r.varint();
    if (tag >>> 3 !== METADATA_PROPS || (tag & 7) !== 2) {
      r.skip(tag & 7);
      continue;
    }
    const end = r.varint() + r.pos;
    let key = '';
    let value = '';
    while (r.pos < end) {
      const t = r.varint();
      if ((t & 7) === 2 && (t >>> 3 === 1 || t >>> 3 === 2)) {
        const len = r.varint();
        const text = utf8.decode(bytes.subarray(r.pos, r.pos + len));
        r.pos += len;
        if (t >>> 3 === 1) key = text;
        else value = text;
      } else {
        r.skip(t & 7);
      }
    }
    props[key] = value;
  }
  return props;
}

/** What the page needs from an ort-dann export's metadata; throws for a model without it. */
export function modelInfo(props) {
  if (!props['ort_dann.metadata_version']) throw new Error('this ONNX model has no ort-dann metadata; export it with `ort-dann export`');
  return {
    imageSize: Number(props.image_size),
    normalization: JSON.parse(props.normalization),
    outputNames: JSON.parse(props.output_names),
    outputs: JSON.parse(props.outputs),
    task: props.task,
    modelName: props.model_name,
    runId: props.run_id,
  };
}
