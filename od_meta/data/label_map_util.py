"""Reads and writes TF OD API label maps (`label_map.pbtxt`) without protobuf.

A label map is the text format of the TF OD API's `StringIntLabelMap`:

    item {
      id: 1                      # 1-based; 0 is reserved for background
      name: "person"
      display_name: "person"     # optional
      keypoints { id: 0 label: "nose" }   # optional, repeated, 0-based ids
    }

The ids in the file are 1-based (label-map ids, also what
`image/object/class/label` holds in a tf.Example). od_meta's models use
0-based class ids `[0, num_classes)`; the shift `class = id - 1` happens once,
in `od_meta.data.tf_example_decoder.TfExampleDecoder`, and the exporter adds
1 back. Nothing in this module shifts ids.

The parser is a small tokenizer for the protobuf text format (comments,
`name: value`, nested `{ }` / `< >` blocks, quoted strings with escapes,
optional `,`/`;` separators), so it does not need generated protobuf code.
Errors name the file and the line.
"""

import ast
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

import tensorflow as tf

# Fields of the TF OD API's StringIntLabelMapItem (string_int_label_map.proto).
_ITEM_FIELDS = {
    'name': 'string', 'id': 'int', 'display_name': 'string',
    'keypoints': 'message', 'ancestor_ids': 'int_repeated',
    'descendant_ids': 'int_repeated', 'frequency': 'enum',
    'instance_type': 'enum',
}
_KEYPOINT_FIELDS = {'id': 'int', 'label': 'string'}

_TOKEN_RE = re.compile(r'''
    (?P<ws>[ \t\r\f\v]+) |
    (?P<newline>\n) |
    (?P<comment>\#[^\n]*) |
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|
                       (?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)) |
    (?P<ident>[A-Za-z_][A-Za-z0-9_.]*) |
    (?P<punct>[{}<>:,;\[\]])
''', re.VERBOSE)


class LabelMapError(ValueError):
  """A malformed label map; the message names the file and line."""


def _tokenize(text: str, path: str):
  tokens = []
  line = 1
  pos = 0
  while pos < len(text):
    match = _TOKEN_RE.match(text, pos)
    if match is None:
      raise LabelMapError(f'{path}:{line}: unexpected character '
                          f'{text[pos]!r}')
    kind = match.lastgroup
    value = match.group(kind)
    if kind == 'newline':
      line += 1
    elif kind not in ('ws', 'comment'):
      tokens.append((kind, value, line))
    pos = match.end()
  return tokens


class _Parser:
  """Recursive-descent parser producing [(field, value, line)] lists."""

  def __init__(self, tokens, path):
    self._tokens = tokens
    self._pos = 0
    self._path = path

  def _peek(self):
    return self._tokens[self._pos] if self._pos < len(self._tokens) else None

  def _next(self, what):
    tok = self._peek()
    if tok is None:
      last = self._tokens[-1][2] if self._tokens else 1
      raise LabelMapError(f'{self._path}:{last}: unexpected end of file, '
                          f'expected {what}')
    self._pos += 1
    return tok

  def parse_fields(self, closing=None):
    fields = []
    while True:
      tok = self._peek()
      if tok is None:
        if closing is not None:
          self._next(f"'{closing}'")
        return fields
      if tok[0] == 'punct' and tok[1] == closing:
        self._pos += 1
        return fields
      if tok[0] == 'punct' and tok[1] in ',;':
        self._pos += 1
        continue
      kind, name, line = self._next('a field name')
      if kind != 'ident':
        raise LabelMapError(f'{self._path}:{line}: expected a field name, '
                            f'got {name!r}')
      tok = self._next(f"':' or '{{' after {name}")
      if tok[0] == 'punct' and tok[1] == ':':
        nxt = self._peek()
        if nxt is not None and nxt[0] == 'punct' and nxt[1] in '{<':
          tok = self._next('{')
        else:
          fields.append((name, self._scalar(name), line))
          continue
      if tok[0] == 'punct' and tok[1] in '{<':
        close = '}' if tok[1] == '{' else '>'
        fields.append((name, self.parse_fields(close), line))
      else:
        raise LabelMapError(f"{self._path}:{tok[2]}: expected ':' or '{{' "
                            f'after {name}, got {tok[1]!r}')

  def _scalar(self, name):
    kind, value, line = self._next(f'a value for {name}')
    if kind == 'punct' and value == '[':
      values = []
      while True:
        tok = self._next("']'")
        if tok[0] == 'punct' and tok[1] == ']':
          return values
        if tok[0] == 'punct' and tok[1] == ',':
          continue
        self._pos -= 1
        values.append(self._scalar(name))
    if kind == 'string':
      parts = [value]
      # Adjacent string literals concatenate, as in protobuf text format.
      while self._peek() is not None and self._peek()[0] == 'string':
        parts.append(self._next('string')[1])
      try:
        return ''.join(ast.literal_eval(p) for p in parts)
      except (ValueError, SyntaxError) as e:
        raise LabelMapError(f'{self._path}:{line}: bad string for {name}: '
                            f'{e}') from None
    if kind == 'number':
      try:
        return int(value, 0)
      except ValueError:
        return float(value)
    if kind == 'ident':
      return value  # Enum value or true/false.
    raise LabelMapError(f'{self._path}:{line}: expected a value for {name}, '
                        f'got {value!r}')


def _expect(path, line, field, value, kind):
  if kind == 'string' and not isinstance(value, str):
    raise LabelMapError(f'{path}:{line}: {field} must be a quoted string, '
                        f'got {value!r}')
  if kind == 'int' and (not isinstance(value, int) or isinstance(value, bool)):
    raise LabelMapError(f'{path}:{line}: {field} must be an integer, got '
                        f'{value!r}')
  if kind == 'message' and not isinstance(value, list):
    raise LabelMapError(f'{path}:{line}: {field} must be a {{ }} block')


def parse_label_map_text(text: str, path: str = '<string>'
                         ) -> List[Dict[str, Any]]:
  """Parses label-map text; see `load_labelmap` for the result and errors."""
  fields = _Parser(_tokenize(text, path), path).parse_fields()
  items = []
  ids = {}
  for name, value, line in fields:
    if name != 'item':
      raise LabelMapError(f"{path}:{line}: unknown top-level field {name!r}; "
                          "a label map holds only 'item { ... }' blocks")
    _expect(path, line, 'item', value, 'message')
    item = {'_line': line}
    for fname, fvalue, fline in value:
      if fname not in _ITEM_FIELDS:
        raise LabelMapError(f'{path}:{fline}: unknown item field {fname!r} '
                            f'(known: {sorted(_ITEM_FIELDS)})')
      kind = _ITEM_FIELDS[fname]
      if kind == 'int_repeated':
        values = fvalue if isinstance(fvalue, list) else [fvalue]
        for v in values:
          _expect(path, fline, fname, v, 'int')
        item.setdefault(fname, []).extend(values)
        continue
      if kind == 'message':
        _expect(path, fline, fname, fvalue, 'message')
        kp = {}
        for kname, kvalue, kline in fvalue:
          if kname not in _KEYPOINT_FIELDS:
            raise LabelMapError(f'{path}:{kline}: unknown keypoints field '
                                f'{kname!r} (known: id, label)')
          _expect(path, kline, f'keypoints.{kname}', kvalue,
                  _KEYPOINT_FIELDS[kname])
          kp[kname] = kvalue
        if 'id' not in kp or 'label' not in kp:
          raise LabelMapError(f'{path}:{fline}: keypoints needs both id and '
                              'label')
        if kp['id'] < 0:
          raise LabelMapError(f'{path}:{fline}: keypoint id must be >= 0, got '
                              f"{kp['id']}")
        item.setdefault('keypoints', []).append(kp)
        continue
      if fname in item:
        raise LabelMapError(f'{path}:{fline}: field {fname!r} given twice in '
                            f'the item starting at line {line}')
      if kind != 'enum':
        _expect(path, fline, fname, fvalue, kind)
      item[fname] = fvalue
    if 'id' not in item:
      raise LabelMapError(f'{path}:{line}: item has no id')
    if 'name' not in item and 'display_name' not in item:
      raise LabelMapError(f'{path}:{line}: item id {item["id"]} has no name')
    if 'name' not in item:
      raise LabelMapError(f'{path}:{line}: item id {item["id"]} has no name '
                          '(only display_name)')
    if not item['name']:
      raise LabelMapError(f'{path}:{line}: item id {item["id"]} has an empty '
                          'name')
    if item['id'] < 1:
      raise LabelMapError(
          f'{path}:{line}: item {item["name"]!r} has id {item["id"]}; label-map'
          ' ids are 1-based (background is implicit, remove id 0 items)')
    if item['id'] in ids:
      raise LabelMapError(f'{path}:{line}: duplicate id {item["id"]} (first '
                          f'used at line {ids[item["id"]]})')
    ids[item['id']] = line
    if 'keypoints' in item:
      kp_ids = [k['id'] for k in item['keypoints']]
      if len(set(kp_ids)) != len(kp_ids):
        raise LabelMapError(f'{path}:{line}: item {item["name"]!r} has '
                            'duplicate keypoint ids')
    items.append(item)
  return items


def load_labelmap(path: str) -> List[Dict[str, Any]]:
  """Loads a label map file.

  Args:
    path: path to a `label_map.pbtxt` (any tf.io.gfile filesystem).

  Returns:
    list of dicts, one per `item`, in file order, with keys 'id' (int,
    1-based), 'name' (str), optionally 'display_name' (str), 'keypoints'
    (list of {'id': int (0-based), 'label': str}), 'ancestor_ids',
    'descendant_ids', 'frequency', 'instance_type', and '_line' (the line of
    the item in the file, for error messages).

  Raises:
    FileNotFoundError: if the file does not exist.
    LabelMapError (a ValueError): naming file and line, for syntax errors,
      unknown fields, a missing id or name, id < 1 or duplicate ids.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'label map {path} does not exist')
  with tf.io.gfile.GFile(path, 'r') as f:
    text = f.read()
  return parse_label_map_text(text, path)


def _items(label_map):
  if isinstance(label_map, str):
    return load_labelmap(label_map)
  return list(label_map)


def get_label_map_dict(label_map, use_display_name: bool = False
                       ) -> Dict[str, int]:
  """Maps class name to 1-based label-map id.

  Args:
    label_map: a path or the list returned by `load_labelmap`.
    use_display_name: key by display_name (falling back to name when an item
      has none) instead of name.

  Returns:
    dict name -> id (1-based, as in the file).

  Raises:
    LabelMapError: if two items share the key (the mapping would be
      ambiguous), naming the line; errors of `load_labelmap`.
  """
  items = _items(label_map)
  result = {}
  lines = {}
  for item in items:
    key = item['name']
    if use_display_name and item.get('display_name'):
      key = item['display_name']
    if key in result:
      raise LabelMapError(
          f"{label_map if isinstance(label_map, str) else '<label map>'}:"
          f"{item.get('_line', '?')}: duplicate "
          f"{'display_name' if use_display_name else 'name'} {key!r} (first "
          f'at line {lines[key]})')
    result[key] = item['id']
    lines[key] = item.get('_line', '?')
  return result


def convert_label_map_to_categories(label_map, use_display_name: bool = True
                                    ) -> List[Dict[str, Any]]:
  """COCO-style categories `[{'id': int, 'name': str}, ...]` sorted by id.

  Args:
    label_map: a path or the list returned by `load_labelmap`.
    use_display_name: 'name' is the item's display_name where it has one
      (the TF OD API's default for categories).

  Returns:
    list of dicts with 'id' (1-based label-map id), 'name' and, where the
    item lists keypoints, 'keypoints' {label: keypoint id}.
  """
  categories = []
  for item in sorted(_items(label_map), key=lambda i: i['id']):
    name = item['name']
    if use_display_name and item.get('display_name'):
      name = item['display_name']
    category = {'id': item['id'], 'name': name}
    if item.get('keypoints'):
      category['keypoints'] = {k['label']: k['id'] for k in item['keypoints']}
    categories.append(category)
  return categories


def create_category_index(categories: Sequence[Mapping[str, Any]]
                          ) -> Dict[int, Dict[str, Any]]:
  """Indexes categories by id: `{id: {'id': id, 'name': name, ...}}`.

  Args:
    categories: iterable of dicts with at least 'id' (1-based label-map id,
      or COCO category id) and 'name'.

  Returns:
    dict id -> the category dict (copied).

  Raises:
    ValueError: if a category lacks 'id' or 'name' or ids repeat.
  """
  index = {}
  for cat in categories:
    if 'id' not in cat or 'name' not in cat:
      raise ValueError(f"category needs 'id' and 'name', got {cat!r}")
    if cat['id'] in index:
      raise ValueError(f"duplicate category id {cat['id']}")
    index[cat['id']] = dict(cat)
  return index


def create_category_index_from_labelmap(label_map, use_display_name=True):
  """`create_category_index(convert_label_map_to_categories(...))`."""
  return create_category_index(
      convert_label_map_to_categories(label_map, use_display_name))


def get_max_label_map_index(label_map) -> int:
  """Largest id in a label map (path or `load_labelmap` list); 0 if empty."""
  items = _items(label_map)
  return max((item['id'] for item in items), default=0)


def _quote(s: str) -> str:
  return '"' + s.replace('\\', '\\\\').replace('"', '\\"').replace(
      '\n', '\\n') + '"'


def label_map_text(names: Sequence[str],
                   display_names: Optional[Sequence[str]] = None,
                   keypoints: Optional[Mapping[str, Sequence[str]]] = None
                   ) -> str:
  """Label-map text for `names`, ids 1..len(names) in order.

  Args:
    names: class names; `names[i]` gets id `i + 1`.
    display_names: optional, one per name.
    keypoints: optional {class name: [keypoint label, ...]}; keypoint ids
      are 0-based positions in that list (TF OD API convention).

  Returns:
    the `label_map.pbtxt` text.

  Raises:
    ValueError: for empty/duplicate names or mismatched display_names.
  """
  names = list(names)
  if not names:
    raise ValueError('names must not be empty')
  if len(set(names)) != len(names):
    raise ValueError('names must be unique')
  if any(not n for n in names):
    raise ValueError('names must be non-empty strings')
  if display_names is not None and len(display_names) != len(names):
    raise ValueError('display_names must have one entry per name')
  keypoints = dict(keypoints or {})
  unknown = set(keypoints) - set(names)
  if unknown:
    raise ValueError(f'keypoints given for unknown classes {sorted(unknown)}')
  lines = []
  for i, name in enumerate(names):
    lines.append('item {')
    lines.append(f'  id: {i + 1}')
    lines.append(f'  name: {_quote(name)}')
    if display_names is not None:
      lines.append(f'  display_name: {_quote(display_names[i])}')
    for k, label in enumerate(keypoints.get(name, ())):
      lines.append(f'  keypoints {{ id: {k} label: {_quote(label)} }}')
    lines.append('}')
  return '\n'.join(lines) + '\n'


def write_label_map(path: str, names: Sequence[str],
                    display_names: Optional[Sequence[str]] = None,
                    keypoints: Optional[Mapping[str, Sequence[str]]] = None,
                    overwrite: bool = False) -> str:
  """Writes a label map with ids 1..len(names) (see `label_map_text`).

  Args:
    path: output file.
    names, display_names, keypoints: as in `label_map_text`.
    overwrite: replace an existing file (default: refuse).

  Returns:
    `path`.

  Raises:
    FileExistsError: if `path` exists and overwrite is False.
    ValueError: as in `label_map_text`.
  """
  text = label_map_text(names, display_names, keypoints)
  if tf.io.gfile.exists(path) and not overwrite:
    raise FileExistsError(f'{path} already exists; refusing to overwrite it '
                          '(pass overwrite=True / --overwrite)')
  parent = path.rsplit('/', 1)[0] if '/' in path else ''
  if parent and not tf.io.gfile.exists(parent):
    tf.io.gfile.makedirs(parent)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(text)
  return path
