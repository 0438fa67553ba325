"""darktable style files: pic's writer against what darktable 4.2 itself exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import FULL_FRAME, Box
from pic_plugin.editors.darktable.styles import StyleItem, crop_item, make_style, read_style, render_style, write_style

# Exported by darktable 4.2.1 under Xvfb (image:create_style + dt.styles.export) from an image whose history was
# an exposure edit followed by a crop; iop_list shortened.
DARKTABLE_EXPORT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<darktable_style version="1.0"><info><name>pic-snap</name><description></description>'
    "<iop_list>rawprepare,0,exposure,0,crop,0,gamma,0</iop_list></info><style>"
    "<plugin><num>1</num><module>1</module><operation>crop</operation>"
    "<op_params>cdcccc3dcdcc4c3e3333333f6666663f0000000000000000</op_params><enabled>1</enabled>"
    "<blendop_params>gz14eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGQg=</blendop_params>"
    "<blendop_version>11</blendop_version><multi_priority>0</multi_priority><multi_name></multi_name></plugin>"
    "<plugin><num>0</num><module>6</module><operation>exposure</operation>"
    "<op_params>00000000000000000000c03f00004842000080c000000000</op_params><enabled>1</enabled>"
    "<blendop_params>gz14eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfNoAAE8gGQg=</blendop_params>"
    "<blendop_version>11</blendop_version><multi_priority>0</multi_priority><multi_name></multi_name></plugin>"
    "</style></darktable_style>\n"
)


def test_reads_a_real_darktable_export(tmp_path: Path) -> None:
    path = tmp_path / "snap.dtstyle"
    path.write_text(DARKTABLE_EXPORT)
    style = read_style(path)
    assert style.name == "pic-snap"
    assert [(i.num, i.operation, i.modversion) for i in style.items] == [(1, "crop", 1), (0, "exposure", 6)]
    crop = style.effective("crop")
    assert crop is not None and crop.enabled and crop.op_params == crop_item(Box(0.1, 0.2, 0.7, 0.9)).op_params


def test_written_plugin_element_matches_darktables_layout() -> None:
    """Byte for byte the <plugin> element darktable writes for the same crop item."""
    ours = render_style(make_style("pic-snap", "", [crop_item(Box(0.1, 0.2, 0.7, 0.9))])).decode()
    theirs_plugin = DARKTABLE_EXPORT[DARKTABLE_EXPORT.index("<plugin>"):DARKTABLE_EXPORT.index("</plugin>") + 9]
    assert theirs_plugin.replace("<num>1</num>", "<num>0</num>") in ours
    assert ours.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<darktable_style version="1.0"><info><name>')


def test_crop_item_encoding_matches_formats_example() -> None:
    item = crop_item(Box(0.1, 0.05, 0.9, 0.95))
    assert item.op_params == "cdcccc3dcdcc4c3d6666663f3333733f0000000000000000"  # FORMATS.md 1.6.4
    assert (item.operation, item.modversion, item.multi_priority) == ("crop", 1, 0)
    off = crop_item(FULL_FRAME, enabled=False)
    assert not off.enabled and off.op_params == "00000000000000000000803f0000803f0000000000000000"
    with pytest.raises(PicError):
        crop_item(Box(0.5, 0.5, 0.4, 0.9))


def test_round_trip_escapes_names(tmp_path: Path) -> None:
    style = make_style('a <b> & "c"', "d & e", [crop_item(Box(0.1, 0.2, 0.7, 0.9)),
                                                  StyleItem(9, "exposure", 6, "00", multi_name="x<y")])
    back = read_style(write_style(tmp_path / "s.dtstyle", style))
    assert back.name == 'a <b> & "c"' and back.description == "d & e"
    assert [i.num for i in back.items] == [0, 1]  # renumbered in apply order
    assert back.items[1].multi_name == "x<y"


@pytest.mark.parametrize(
    "text",
    [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><darktable_style>&b;</darktable_style>',
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><darktable_style>&e;</darktable_style>',
        "<not-a-style/>",
        "<darktable_style><style><plugin><num>x</num></plugin></style></darktable_style>",
        "not xml at all",
    ],
)
def test_hostile_or_broken_styles_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.dtstyle"
    path.write_text(text)
    with pytest.raises(PicError):
        read_style(path)
