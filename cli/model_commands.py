"""``pic profile``, ``pic learn``, ``pic eval``, ``pic train`` and ``pic model``: the personalization commands.

Thin click wrappers over ``pic_plugin.library.learn``, ``pic_plugin.research.evaluation`` and ``pic_plugin.research.prior_training``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .common import catalog_option, open_catalog, verbosity, verbosity_options


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        out[key.strip().lower()] = value.strip()
    return out


@click.command()
@click.option("--user", required=True, metavar="NAME", help="Whose profile.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set an attribute: ratio=4:5, framing=tight|medium|loose, placement=centred|left|right|high|low, "
    "orientation=follow|fixed (does your ratio turn with the photo?). Repeatable.",
)
@click.option("--unset", "unsets", multiple=True, metavar="KEY", help="Remove an attribute. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@catalog_option
def profile(
    user: str, sets: tuple[str, ...], unsets: tuple[str, ...], as_json: bool, catalog_path: Path | None
) -> None:
    """Show or set a user's profile attributes (a cold start for their crop style).

    The profile steers pic's suggestions for the user (a strong preference, weighed against what the photo
    suggests) until 5 of their own crops say more; to get one ratio exactly, ask for it: pic batch --ratio 4:5.
    """
    from pic_plugin.model.network import unknown_attributes

    with open_catalog(catalog_path) as catalog:
        attributes = dict((catalog.user(user) or {}).get("attributes", {}))
        if sets or unsets:
            attributes.update(_parse_sets(sets))
            for key in unsets:
                attributes.pop(key.strip().lower(), None)
            catalog.set_user_attributes(user, attributes)
        versions = catalog.model_versions(user)
        described = _habit(catalog, user)
    unknown = unknown_attributes(attributes)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "user": user,
                    "attributes": attributes,
                    "ignored_by_model": unknown,
                    "model_versions": len(versions),
                    "framing_habit": described,
                }
            )
        )
        return
    click.echo(f"user {user}")
    for key, value in sorted(attributes.items()):
        click.echo(f"  {key} = {value}" + ("   (kept, not used by the model)" if f"{key}={value}" in unknown else ""))
    if not attributes:
        click.echo("  (no attributes)")
    active = next((v for v in versions if v["active"]), None)
    click.echo(f"  model: version {active['version']} ({active['note']})" if active else "  model: generic prior")
    if described:
        click.echo(f"  framing habit: {described}")


@click.command()
@click.option("--user", required=True, metavar="NAME", help="Whose crops.")
@click.option(
    "--crops",
    "crops_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV (path,left,top,right,bottom; normalized, displayed frame) or JSON lines with the same keys.",
)
@click.option(
    "--from-library",
    "library",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Read the crops you made in darktable / digiKam / Lightroom under PATH (a folder or a photo; repeatable).",
)
@click.option(
    "--darktable-library",
    type=click.Path(exists=True, dir_okay=True, path_type=Path),
    metavar="PATH",
    help="With --from-library: darktable's library.db (read-only); its edits win over the sidecars.",
)
@click.option(
    "--digikam-db",
    type=click.Path(exists=True, dir_okay=True, path_type=Path),
    metavar="PATH",
    help="With --from-library: digiKam's digikam4.db or its folder (read-only), for versions without sidecars.",
)
@click.option("--note", default="", help="Note stored with the new model version.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("more_library", nargs=-1, type=click.Path(exists=True, path_type=Path), metavar="[PATH]...")
@catalog_option
@verbosity_options
def learn(
    user: str,
    crops_file: Path | None,
    library: tuple[Path, ...],
    more_library: tuple[Path, ...],
    darktable_library: Path | None,
    digikam_db: Path | None,
    note: str,
    as_json: bool,
    catalog_path: Path | None,
) -> None:
    """Add a user's crops and fine-tune their model (seconds; a new version, undo with `pic model --rollback`).

    --from-library reads the crops you already made (darktable sidecars and duplicates, Lightroom/Camera Raw crs
    crops, digiKam versions; see `pic crops`) into the catalog; re-reading a library only updates what changed.
    """
    from pic_plugin.library.harvest import LibraryCrop, harvest
    from pic_plugin.library.learn import learn as learn_crops
    from pic_plugin.library.learn import read_crop_file

    from .library_commands import crop_line

    if more_library and not library:
        raise click.UsageError("paths after the options belong to --from-library: pic learn --from-library PATH...")
    library = (*library, *more_library)  # `--from-library A B C` as DESIGN section 3 writes it
    if not crops_file and not library and darktable_library is None and digikam_db is None:
        raise click.UsageError("give --crops FILE or --from-library PATH")
    records = []
    if crops_file:
        try:
            records += read_crop_file(crops_file)
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.UsageError(str(exc)) from None
    harvest_errors: list[str] = []
    harvested = None
    level = verbosity()

    def on_crop(crop: LibraryCrop, changed: bool) -> None:  # -v: every crop read, new or as before
        click.echo(("new: " if changed else "unchanged: ") + crop_line(crop), err=True)

    with open_catalog(catalog_path) as catalog:
        if library or darktable_library is not None or digikam_db is not None:
            harvested = harvest(
                library, catalog, user, darktable_library=darktable_library, digikam_db=digikam_db,
                on_crop=on_crop if level > 0 else None,
            )
            harvest_errors = [f"{path}: {message}" for path, message in harvested.errors]
        result = learn_crops(catalog, user, records, note=note)
    errors = harvest_errors + result.errors
    for err in errors:
        click.echo(f"error: {err}", err=True)
    if level < 0 and not as_json:  # -q: the errors above and the exit status are the answer
        if errors:
            sys.exit(1)
        return
    if harvested is not None and not as_json:
        click.echo(
            f"{user}: read {harvested.crops} crops on {harvested.images} photos "
            f"({harvested.added} new or changed)"
            + (" from " + ", ".join(f"{n} {src}" for src, n in sorted(harvested.by_source.items())) if harvested.by_source else "")
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "user": user,
                    "added": result.added + (harvested.added if harvested is not None else 0),
                    "harvested": None
                    if harvested is None
                    else {"photos": harvested.images, "crops": harvested.crops, "by_source": harvested.by_source},
                    "k": result.k,
                    "version": result.version,
                    "seconds": round(result.seconds, 3),
                    "framing_habit": result.habit,
                    "errors": errors,
                }
            )
        )
    elif result.version is None:
        click.echo(f"{user}: no usable crops yet; suggestions use the generic prior")
    else:
        click.echo(
            f"{user}: {result.added} new crops; fine-tuned on {result.k} crops in {result.seconds:.1f}s "
            f"-> model version {result.version}"
        )
        if result.habit:
            click.echo(f"  framing habit: {result.habit}")
    if errors:
        sys.exit(1)


@click.command("eval")
@click.option(
    "--user",
    default=None,
    metavar="NAME",
    help="Evaluate on this user's own crops (held-out split). Without it: the simulated-user protocol.",
)
@click.option("--heldout", default=0.3, show_default=True, help="Share of the user's photos held out.")
@click.option("--users", "n_users", default=24, show_default=True, help="Simulated users (protocol only).")
@click.option("--quick", is_flag=True, help="Protocol on 4 users, k in {0, 10}, no smartcrop/libvips.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@catalog_option
def eval_command(
    user: str | None, heldout: float, n_users: int, quick: bool, as_json: bool, catalog_path: Path | None
) -> None:
    """How well pic predicts crops: a user's held-out crops, or the simulated-user protocol on the development photos."""
    from pic_plugin.model.network import load_prior
    from pic_plugin.research import evaluation

    net, _ = load_prior()
    if user:
        from pic_plugin.library.learn import user_crop_examples

        with open_catalog(catalog_path) as catalog:
            pairs, errors = user_crop_examples(catalog, user)
            attributes = (catalog.user(user) or {}).get("attributes", {})
        for err in errors:
            click.echo(f"error: {err}", err=True)
        crops = [evaluation.UserCrop(row["content_key"], ex.analysis, ex.crop, ex.weight) for row, ex in pairs]
        try:
            report = evaluation.evaluate_user(net, crops, attributes, heldout)
        except ValueError as exc:
            raise click.UsageError(f"{user}: {exc}") from None
        if as_json:
            click.echo(json.dumps(report))
            return
        click.echo(
            f"{user}: fine-tuned on {report['train_crops']} crops ({report['finetune_s']:.1f}s), "
            f"measured on {report['heldout_crops']} held-out crops; favourite ratio {report['favourite_ratio']}"
        )
        click.echo("| method | mean IoU | BDE | hit rate | face cuts |")
        click.echo("|---|---:|---:|---:|---:|")
        for method, m in report["methods"].items():
            click.echo(f"| {method} | {m['iou']:.3f} | {m['bde']:.3f} | {m['hit']:.3f} | {m['face_cuts']} |")
        return
    from pic_plugin.research.evaluation.report import protocol_report

    try:
        text, data = protocol_report(
            n_users=4 if quick else n_users, quick=quick, log=lambda s: click.echo(s, err=True)
        )
    except FileNotFoundError as exc:
        raise click.UsageError(f"{exc} (or evaluate on your own crops: pic eval --user NAME)") from None
    click.echo(json.dumps(data) if as_json else text)


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the prior weights (default: the package's data/pic_prior.pt).",
)
@click.option("--steps", default=None, type=int, help="Training steps (default: the shipped recipe).")
@click.option(
    "--gaicd",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="A GAICD copy with images (JSON or original layout): its scored crops also train the objective.",
)
@click.option(
    "--per-user",
    "per_user",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Per-user CSV files of the PIC paper (name,bbox,score,...): real users join the prior's tasks.",
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder with the images the per-user CSV files name.",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Feature cache folder (default: $PIC_FEATURE_CACHE or ~/.cache/pic/features).",
)
def train(
    out: Path | None,
    steps: int | None,
    gaicd: Path | None,
    per_user: tuple[Path, ...],
    images: Path | None,
    cache: Path | None,
) -> None:
    """Retrain the shared prior (needs the development photos, or your own copies of the datasets)."""
    from pic_plugin.research.prior_recipe import train_shipped_prior

    try:
        train_shipped_prior(
            out=out,
            steps=steps,
            gaicd=gaicd,
            per_user=list(per_user),
            images=images,
            cache=cache,
            log=lambda s: click.echo(s, err=True),
        )
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
@click.option("--user", required=True, metavar="NAME", help="Whose model versions.")
@click.option("--rollback", is_flag=True, help="Activate the version before the active one.")
@click.option("--activate", type=int, default=None, metavar="VERSION", help="Activate this version.")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@catalog_option
def model(user: str, rollback: bool, activate: int | None, as_json: bool, catalog_path: Path | None) -> None:
    """List a user's model versions; roll back a bad fine-tune or activate any version."""
    with open_catalog(catalog_path) as catalog:
        versions = catalog.model_versions(user)
        if rollback or activate is not None:
            if not versions:
                raise click.UsageError(f"user {user!r} has no model versions")
            if activate is None:
                active = next((v["version"] for v in versions if v["active"]), versions[-1]["version"])
                older = [v["version"] for v in versions if v["version"] < active]
                if not older:
                    raise click.UsageError(f"version {active} is the oldest; nothing to roll back to")
                activate = older[-1]
            try:
                catalog.activate_model(user, activate)
            except KeyError as exc:
                raise click.UsageError(str(exc.args[0])) from None
            versions = catalog.model_versions(user)
        described = _habit(catalog, user)
    if as_json:
        click.echo(json.dumps(versions))
        return
    if not versions:
        click.echo(f"{user}: no fine-tuned versions (generic prior + attributes)")
    for v in versions:
        mark = "*" if v["active"] else " "
        k = v["metrics"].get("k", "?")
        click.echo(f"{mark} v{v['version']}  k={k}  {v['note']}")
    if described:
        click.echo(f"framing habit (active): {described}")


def _habit(catalog: Any, user: str) -> str | None:
    """The user's framing habit in words: the active model's rule, else what their profile says. Reads the
    stored JSON directly, so listing does not load torch."""
    from pic_plugin.model.framing_rule import FramingRule, rule_from_attributes
    from pic_plugin.model.version import active_user_record

    active = active_user_record(catalog, user)
    stored = active[1] if active is not None else None
    if stored and stored.get("rule"):
        try:
            return FramingRule.from_dict(stored["rule"]).describe()
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # not a rule this version understands: say what the profile says
    rule = rule_from_attributes((catalog.user(user) or {}).get("attributes", {}))
    return rule.describe() if rule is not None else None


COMMANDS = [profile, learn, eval_command, train, model]

__all__ = ["COMMANDS"]
