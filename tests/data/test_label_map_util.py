"""Tests for od_meta.data.label_map_util."""

import pytest

from od_meta.data import label_map_util

_GOOD = '''
# A comment.
item {
  name: "person"   # trailing comment
  id: 1
  display_name: 'Person'
  keypoints { id: 0 label: "nose" }
  keypoints { id: 1, label: "left_eye" }
}
item < id: 3 name: "car" >
item: {
  id: 2
  name: "dog \\"rex\\""
}
'''


def _write(tmp_path, text, name='label_map.pbtxt'):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_load_good_label_map(tmp_path):
  path = _write(tmp_path, _GOOD)
  items = label_map_util.load_labelmap(path)
  assert [i['id'] for i in items] == [1, 3, 2]
  assert items[0]['display_name'] == 'Person'
  assert items[0]['keypoints'] == [{'id': 0, 'label': 'nose'},
                                   {'id': 1, 'label': 'left_eye'}]
  assert items[2]['name'] == 'dog "rex"'
  assert label_map_util.get_label_map_dict(path) == {
      'person': 1, 'car': 3, 'dog "rex"': 2}
  assert label_map_util.get_label_map_dict(path, use_display_name=True)[
      'Person'] == 1
  assert label_map_util.get_max_label_map_index(path) == 3
  categories = label_map_util.convert_label_map_to_categories(path)
  assert [c['id'] for c in categories] == [1, 2, 3]
  assert categories[0] == {'id': 1, 'name': 'Person',
                           'keypoints': {'nose': 0, 'left_eye': 1}}
  index = label_map_util.create_category_index(categories)
  assert index[3] == {'id': 3, 'name': 'car'}


@pytest.mark.parametrize('text, match', [
    ('item {\n id: 1\n name: "a"\n}\nitem {\n id: 1\n name: "b"\n}\n',
     r':5: duplicate id 1 \(first used at line 1\)'),
    ('item {\n id: 0\n name: "background"\n}\n', r':1: .*1-based'),
    ('item {\n id: 2\n}\n', r':1: item id 2 has no name'),
    ('item {\n name: "a"\n}\n', r':1: item has no id'),
    ('item {\n id: 1\n name: "a"\n colour: 3\n}\n',
     r":4: unknown item field 'colour'"),
    ('item {\n id: "x"\n name: "a"\n}\n', r':2: id must be an integer'),
    ('item {\n id: 1\n name: "a"\n', r'unexpected end of file'),
    ('item {\n id: 1\n name: "a" }\n}\n', r':4: expected a field name'),
])
def test_bad_label_maps_name_file_and_line(tmp_path, text, match):
  path = _write(tmp_path, text)
  with pytest.raises(label_map_util.LabelMapError, match=match) as e:
    label_map_util.load_labelmap(path)
  assert path in str(e.value)


def test_duplicate_names_rejected_in_dict(tmp_path):
  path = _write(tmp_path, 'item { id: 1 name: "a" }\nitem { id: 2 name: "a" }')
  with pytest.raises(ValueError, match=r":2: duplicate name 'a'"):
    label_map_util.get_label_map_dict(path)


def test_missing_file():
  with pytest.raises(FileNotFoundError, match='nope.pbtxt'):
    label_map_util.load_labelmap('/nonexistent/nope.pbtxt')


def test_write_round_trip_and_overwrite_refusal(tmp_path):
  path = str(tmp_path / 'out.pbtxt')
  label_map_util.write_label_map(path, ['a', 'b"c'],
                                 keypoints={'a': ['k0', 'k1']})
  items = label_map_util.load_labelmap(path)
  assert [(i['id'], i['name']) for i in items] == [(1, 'a'), (2, 'b"c')]
  assert items[0]['keypoints'] == [{'id': 0, 'label': 'k0'},
                                   {'id': 1, 'label': 'k1'}]
  with pytest.raises(FileExistsError, match='out.pbtxt'):
    label_map_util.write_label_map(path, ['x'])
  assert label_map_util.get_label_map_dict(path) == {'a': 1, 'b"c': 2}
  label_map_util.write_label_map(path, ['x'], overwrite=True)
  assert label_map_util.get_label_map_dict(path) == {'x': 1}
  with pytest.raises(ValueError, match='unique'):
    label_map_util.write_label_map(str(tmp_path / 'd.pbtxt'), ['a', 'a'])
