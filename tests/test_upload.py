"""Uploads from the app: files land inside the workspace or not at all, unsafe names and sizes are refused with the
file named, unsupported files reach prepare's list of skipped files, and prepare is the CLI's."""

import stat
import zipfile

import pytest

from workbench.config import Config, LimitsConfig
from workbench.data.loaders import BadInputError
from workbench.data.prepare import prepare
from workbench.data.upload import land_upload, landed_name, prepare_upload, uploads_folder
from workbench.runs import run_states
from workbench.workspace import read_json, run_paths

RETURNS = """# Returns policy

## Return window
Customers may return a Skylark kettle within 45 days of delivery for a full refund, unused and in its box.

## Refunds
Refunds go back to the original card within five working days after the warehouse receives the parcel.
"""
WARRANTY = """# Warranty

## Cover
Every Skylark kettle carries a three year warranty against manufacturing faults, limescale damage excepted.
"""


@pytest.fixture
def files(tmp_path):
    """Two good Markdown files and an unsupported binary, as a browser upload leaves them (one folder each)."""
    made = []
    for name, data in (("returns.md", RETURNS), ("warranty.md", WARRANTY), ("setup.exe", b"MZ\x90\x00binary")):
        folder = tmp_path / "browser" / str(len(made))
        folder.mkdir(parents=True)
        path = folder / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        made.append(path)
    return made


def make_zip(path, members: dict, links: tuple[str, ...] = ()):
    """A .zip with `members` (name -> text) and symlink members `links` (each pointing at /etc/passwd)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(zipfile.ZipInfo(name), text)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


def assert_nothing_landed(home):
    """No upload folder at all: not even the empty folders a refused upload made."""
    assert not (home / "uploads").exists()


def test_files_and_a_zip_land_inside_a_new_folder_of_the_workspace(home, files, tmp_path):
    archive = make_zip(tmp_path / "more.zip", {"manuals/kettle.md": RETURNS, "manuals/": ""})
    upload = land_upload("mydocs", [*files, archive], home=home)
    assert upload.root.parent == uploads_folder("mydocs", home) == home.resolve() / "uploads" / "mydocs"
    assert upload.files == ["returns.md", "warranty.md", "setup.exe", "manuals/kettle.md"]
    assert (upload.corpus / "manuals" / "kettle.md").read_text() == RETURNS and upload.qa is None
    landed = sorted(p.relative_to(home.resolve()).as_posix() for p in home.resolve().rglob("*") if p.is_file())
    assert landed == sorted(f"uploads/mydocs/{upload.root.name}/corpus/{name}" for name in upload.files)
    assert upload.bytes == sum(f.stat().st_size for f in files) + len(RETURNS)
    again = land_upload("mydocs", files[:1], home=home)  # a second upload gets a folder of its own
    assert again.root != upload.root and (upload.corpus / "returns.md").is_file()


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("../escape.md", "climbs out"),
        ("docs/../../escape.md", "climbs out"),
        ("/etc/escape.md", "absolute path"),
        ("C:/escape.md", "absolute path"),
        ("..\\escape.md", "climbs out"),
    ],
)
def test_a_zip_member_that_would_land_outside_refuses_the_upload(home, files, tmp_path, member, why):
    archive = make_zip(tmp_path / "slip.zip", {"fine.md": RETURNS, member: "pwned"})
    with pytest.raises(BadInputError, match=why) as refused:
        land_upload("mydocs", [files[0], archive], home=home)
    assert f"slip.zip: member {member!r}" in str(refused.value)
    assert_nothing_landed(home)
    assert not (tmp_path / "escape.md").exists() and not (home / "escape.md").exists()


def test_a_symlink_member_refuses_the_upload(home, tmp_path):
    archive = make_zip(tmp_path / "links.zip", {"fine.md": RETURNS}, links=("passwd.md",))
    with pytest.raises(BadInputError, match="'passwd.md': a link or special file; make the .zip of plain files"):
        land_upload("mydocs", [archive], home=home)
    assert_nothing_landed(home)


def test_names_with_nul_or_control_characters_are_refused_and_backslashes_are_folders():
    for raw in ("a\x00.md", "a\nb.md", "a\x1b.md"):
        with pytest.raises(BadInputError, match="NUL or control character"):
            landed_name(raw, "upload")
    assert landed_name("docs\\sub\\a.md", "upload").as_posix() == "docs/sub/a.md"
    assert landed_name("./docs//a.md", "upload").as_posix() == "docs/a.md"
    with pytest.raises(BadInputError, match="no file name"):
        landed_name("./", "upload")


def test_a_link_or_a_folder_given_as_an_uploaded_file_is_refused(home, files, tmp_path):
    link = tmp_path / "link.md"
    link.symlink_to(files[0])
    for given in (link, tmp_path / "browser"):
        with pytest.raises(BadInputError, match="not a plain file"):
            land_upload("mydocs", [files[1], given], home=home)
    assert_nothing_landed(home)


def test_too_big_files_uploads_and_zips_are_refused_with_the_limit_to_change(home, files, tmp_path):
    small = LimitsConfig(upload_file_bytes=200, upload_total_bytes=300, upload_files=3)
    with pytest.raises(BadInputError, match=r"returns.md: \d+ bytes; a file may hold at most 200") as refused:
        land_upload("mydocs", files, home=home, limits=small)
    assert "limits.upload_file_bytes" in str(refused.value)
    roomy = small.model_copy(update={"upload_file_bytes": 1000})
    with pytest.raises(BadInputError, match=r"warranty.md: the upload would exceed 300 bytes \(limits.upload_total"):
        land_upload("mydocs", files, home=home, limits=roomy)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", b"\0" * 5_000_000)  # 5 MB of zeros packs into a few kB
    assert bomb.stat().st_size < 20_000
    limits = LimitsConfig(upload_total_bytes=1_000_000)
    with pytest.raises(BadInputError, match=r"bomb.zip: unpacks to 5,000,000 bytes; an upload may hold at most"):
        land_upload("mydocs", [bomb], home=home, limits=limits)
    many = make_zip(tmp_path / "many.zip", {f"doc{i}.md": RETURNS for i in range(4)})
    with pytest.raises(BadInputError, match=r"many.zip: 4 entries; an upload may hold at most 3 files"):
        land_upload("mydocs", [many], home=home, limits=LimitsConfig(upload_files=3))
    assert_nothing_landed(home)


def test_a_zip_that_lies_about_its_sizes_is_refused_not_unpacked(home, tmp_path):
    liar = tmp_path / "liar.zip"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.txt", b"a" * 50_000)
    data = bytearray(liar.read_bytes())
    # Claim 10 bytes unpacked in both headers: the size checks pass, and unpacking stops at the claimed size.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + offset
        data[at : at + 4] = (10).to_bytes(4, "little")
    liar.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="liar.zip: member 'big.txt': cannot be unpacked"):
        land_upload("mydocs", [liar], home=home, limits=LimitsConfig(upload_file_bytes=1000))
    assert_nothing_landed(home)


def test_two_files_of_one_name_and_a_bad_zip_are_refused(home, files, tmp_path):
    twin = tmp_path / "twin" / "returns.md"
    twin.parent.mkdir()
    twin.write_text(WARRANTY)
    with pytest.raises(BadInputError, match="already has the path 'returns.md'; rename one"):
        land_upload("mydocs", [files[0], twin], home=home)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip at all")
    with pytest.raises(BadInputError, match="broken.zip: not a readable .zip"):
        land_upload("mydocs", [broken], home=home)
    with pytest.raises(BadInputError, match="no files uploaded"):
        land_upload("mydocs", [], home=home)
    with pytest.raises(BadInputError, match="a QA set must be a .jsonl or .csv"):
        land_upload("mydocs", files[:1], qa=files[2], home=home)
    with pytest.raises(BadInputError, match="run name '../x': use 1-64"):
        land_upload("../x", files, home=home)
    assert_nothing_landed(home)


def test_prepare_lists_the_unsupported_file_as_skipped_like_the_cli(home, files, tmp_path):
    upload, report = prepare_upload("mydocs", files, home=home, progress=False)
    assert report["files"]["read"] == 2 and report["documents"]["kept"] == 2
    [skipped] = report["files"]["skipped"]
    assert skipped["source"] == str(upload.corpus / "setup.exe")
    assert skipped["reason"].startswith("unsupported file type '.exe' (supported: .md")
    quality = run_paths("mydocs", home).quality_md.read_text()
    assert "setup.exe" in quality and "unsupported file type" in quality
    manifest = read_json(run_paths("mydocs", home).manifest)
    assert manifest["prepare"]["corpus"] == [str(upload.corpus)]
    cli = prepare("cli", [upload.corpus], home=home, progress=False)  # the same function on the same folder
    assert cli["files"] == report["files"] and cli["splits"] == report["splits"]
    assert [s.label for s in run_states(home)] == ["cli · prepared", "mydocs · prepared"]

    again, _ = prepare_upload("mydocs", files[:2], home=home, progress=False)  # the earlier upload goes
    assert [p.name for p in uploads_folder("mydocs", home).iterdir()] == [again.root.name]


def test_a_failed_prepare_leaves_no_upload_and_the_previous_run_as_it_was(home, files, tmp_path):
    prepare_upload("mydocs", files, home=home, progress=False)
    before = {p: p.read_bytes() for p in run_paths("mydocs", home).root.rglob("*") if p.is_file()}
    uploads = sorted(uploads_folder("mydocs", home).iterdir())
    with pytest.raises(BadInputError, match="no usable documents"):
        prepare_upload("mydocs", [files[2]], home=home, progress=False)
    assert sorted(uploads_folder("mydocs", home).iterdir()) == uploads
    assert {p: p.read_bytes() for p in run_paths("mydocs", home).root.rglob("*") if p.is_file()} == before
    with pytest.raises(BadInputError, match="no usable documents"):
        prepare_upload("other", [files[2]], home=home, progress=False, config=Config())
    assert not uploads_folder("other", home).exists() and not run_paths("other", home).root.exists()
