r"""Scores every record of a split with a trained NIMA, and reports how well it did.

  python -m nima_tf.evaluate                                   # the sample's run
  python -m nima_tf.evaluate --model_dir=gs://b/runs/1 [--records_dir=gs://b/records] \
      [--split=test] [--output_dir=...]

Images go through training's evaluation dataset (`data.make_dataset`,
`data.parse_eval`: the whole stored image resized to the input size, no
augmentation), so the figures are those `train` reports. Writes to
`--output_dir` (default `<model_dir>/evaluation/<split>`):

* `predictions.csv`: one row per image: `image_id`, `true_mean`, `true_std`,
  `pred_mean`, `pred_std`, then the distributions `true_p1..true_p10` and
  `pred_p1..pred_p10`;
* `metrics.json`: `metrics.summarize` of all of them (count, EMD, accuracy at
  the threshold 5, LCC and SRCC of the mean scores and of the stds);
* `accuracy_by_bin.csv` and `report.md` with PNG figures: predicted and
  true mean scores overlaid, predicted against true (mean and standard
  deviation), accuracy by true score bin (AVA's extremes are rare and hard),
  and photo grids of the stored images with the highest and lowest predicted
  means and the largest errors, captioned with true and predicted scores; the
  report sets the run beside NIMA's published results on the official AVA
  test split, saying per row whether the comparison holds, and opens with a
  warning when the model is the built-in synthetic sample's (`model_card`).
"""

import dataclasses
import json
import os
import sys
from typing import Dict, List, Optional

from absl import flags

from nima_tf import cli  # pylint: disable=g-bad-import-order

cli.start_tensorflow_quietly()  # before anything imports TensorFlow

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
import pandas as pd
import tensorflow as tf
import tqdm

from nima_tf import cli
from nima_tf import data
from nima_tf import dataset_info
from nima_tf import figures
from nima_tf import metrics
from nima_tf import model_card
from nima_tf import ratings
from nima_tf import records
from nima_tf import sample
from nima_tf import scoring
from nima_tf import splits

PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"
BINS_FILE = "accuracy_by_bin.csv"
REPORT_FILE = "report.md"
DISTRIBUTIONS_FIGURE = "score_distributions.png"
SCATTER_FIGURE = "predicted_vs_true.png"
BINS_FIGURE = "accuracy_by_bin.png"
STD_FIGURE = "predicted_vs_true_std.png"
BEST_FIGURE = "best_predicted.png"
WORST_FIGURE = "worst_predicted.png"
ERRORS_FIGURE = "largest_errors.png"
GRID_PHOTOS = 8
TRUE_COLUMNS = [f"true_p{score}" for score in range(1, ratings.NUM_BINS + 1)]
PRED_COLUMNS = [f"pred_p{score}" for score in range(1, ratings.NUM_BINS + 1)]
PUBLISHED_SOURCE = ("Talebi & Milanfar 2018, \"NIMA: Neural Image Assessment\", "
                    "IEEE Transactions on Image Processing 27(8)")


@dataclasses.dataclass(frozen=True)
class PublishedResult:
  """A published result on the official AVA test split; None where not reported."""

  model: str
  accuracy: float
  lcc_mean: Optional[float] = None
  srcc_mean: Optional[float] = None
  emd: Optional[float] = None
  lcc_std: Optional[float] = None
  srcc_std: Optional[float] = None
  source: str = PUBLISHED_SOURCE


# NIMA's published figures, then the earlier baselines the project's
# seed listed, each with the paper it comes from.
PUBLISHED = (
    PublishedResult("NIMA MobileNet", 0.8036, 0.518, 0.510, 0.081, 0.152, 0.137),
    PublishedResult("NIMA VGG16", 0.8060, 0.610, 0.592, 0.051, 0.205, 0.202),
    PublishedResult("NIMA Inception-v2", 0.8151, 0.638, 0.612, 0.050, 0.233, 0.218),
    PublishedResult("Murray et al. 2012", 0.6800, source=(
        "Murray, Marchesotti & Perronnin 2012, \"AVA: A large-scale database for aesthetic "
        "visual analysis\", CVPR")),
    PublishedResult("Kong et al. 2016", 0.7204, source=(
        "Kong, Shen, Lin, Mech & Fowlkes 2016, \"Photo aesthetics ranking network with "
        "attributes and content adaptation\", ECCV")),
    PublishedResult("Lu et al. 2014", 0.7325, source=(
        "Lu, Lin, Jin, Yang & Wang 2014, \"RAPID: Rating pictorial aesthetics using deep "
        "learning\", ACM Multimedia")),
    PublishedResult("Lu et al. 2015", 0.7446, source=(
        "Lu, Lin, Shen, Mech & Wang 2015, \"Deep multi-patch aggregation network for image "
        "style, aesthetics, and quality estimation\", ICCV")),
    PublishedResult("Schwarz et al.", 0.7583, source=(
        "Schwarz, Wieschollek & Lensch 2018, \"Will people like your image? Learning the "
        "aesthetic space\", WACV")),
)


def predict_records(scorer: scoring.Scorer, records_dir: str, split: str,
                    batch_size: int = 64) -> pd.DataFrame:
  """Scores every record of `split`: the rows of `predictions.csv`, in the dataset's order.

  Raises `data.EmptySplitError` when the split holds no records.
  """
  total = data.check_not_empty(records_dir, split, "evaluate")
  batches = data.make_dataset(records_dir, split, data.InputConfig(
      image_size=scorer.input_size, global_batch_size=batch_size), with_ids=True)
  with tqdm.tqdm(total=total, unit="img", desc=f"Scoring {split}",
                 disable=total < batch_size) as progress:
    with data.corrupt_shards_named(records_dir, split):
      predictions = scoring.predict_distributions(
          lambda pixels: scorer.compiled_scores(pixels)["distribution"], batches,
          on_batch=progress.update)
  return predictions_frame(predictions.image_ids, predictions.true, predictions.pred)


def predictions_frame(image_ids, true_dist, pred_dist) -> pd.DataFrame:
  """The table of `predictions.csv` from ids and true and predicted distributions (N, 10)."""
  true_dist = np.asarray(true_dist, dtype=np.float64)
  pred_dist = np.asarray(pred_dist, dtype=np.float64)
  frame = pd.DataFrame({
      "image_id": np.asarray(image_ids, dtype=np.int64),
      "true_mean": ratings.mean_score(true_dist),
      "true_std": ratings.std_score(true_dist),
      "pred_mean": ratings.mean_score(pred_dist),
      "pred_std": ratings.std_score(pred_dist),
  })
  return pd.concat([frame, pd.DataFrame(true_dist, columns=TRUE_COLUMNS),
                    pd.DataFrame(pred_dist, columns=PRED_COLUMNS)], axis=1)


def summarize(predictions: pd.DataFrame) -> dict:
  """`metrics.json`: the evaluation metrics of a predictions table."""
  return metrics.summarize(predictions[TRUE_COLUMNS].to_numpy(),
                           predictions[PRED_COLUMNS].to_numpy())


def accuracy_by_bin(predictions: pd.DataFrame) -> pd.DataFrame:
  """Per true-score bin (`ratings.score_bin`; bin k holds means in [k+1, k+2)).

  Columns: `bin`, `scores` (its range; the last bin holds 10 only), `images`,
  `accuracy` (binary, at 5), `mean_abs_error` of the mean score, `true_mean`
  and `pred_mean` (averages). Empty bins have NaN figures.
  """
  true_mean = predictions["true_mean"].to_numpy()
  pred_mean = predictions["pred_mean"].to_numpy()
  bins = ratings.score_bin(true_mean)
  agree = metrics.is_high_quality(true_mean) == metrics.is_high_quality(pred_mean)
  rows = []
  for index in range(ratings.NUM_BINS):
    inside = bins == index
    rows.append({
        "bin": index,
        "scores": f"{index + 1}-{index + 2}" if index + 1 < ratings.NUM_BINS else "10",
        "images": int(inside.sum()),
        "accuracy": agree[inside].mean() if inside.any() else np.nan,
        "mean_abs_error": np.abs(pred_mean - true_mean)[inside].mean() if inside.any() else np.nan,
        "true_mean": true_mean[inside].mean() if inside.any() else np.nan,
        "pred_mean": pred_mean[inside].mean() if inside.any() else np.nan,
    })
  return pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class ReportContext:
  """What was evaluated, for the report's text."""

  model_path: str
  backbone: str
  input_size: int
  records_dir: str
  split: str
  card: Optional[dict] = None


def comparison_validity(context: ReportContext) -> str:
  """Whether this run's figures compare with NIMA's published ones, and if not why."""
  if model_card.is_synthetic(context.card) or model_card.is_sample_records(context.records_dir):
    return "no: the built-in synthetic sample, not AVA"
  if context.split != splits.TEST:
    return f"no: the {context.split} split, not AVA's official test split"
  if context.card is None:
    return "only if these are AVA records (no model card says what the model was trained on)"
  return "yes, if these records were built from AVA with its official test list"


def _figures(predictions: pd.DataFrame, by_bin: pd.DataFrame, summary: dict) -> Dict[str, bytes]:
  """The report's PNG figures, by file name."""
  plt = figures.pyplot()
  true_mean, pred_mean = predictions["true_mean"], predictions["pred_mean"]
  pngs = {}

  def save(name, figure):
    pngs[name] = figures.to_png(figure)

  figure, axes = plt.subplots(figsize=(6, 4))
  edges = np.linspace(1, 10, 37)
  axes.hist(true_mean, bins=edges, alpha=0.6, label=f"true (sd {true_mean.std():.2f})")
  axes.hist(pred_mean, bins=edges, alpha=0.6, label=f"predicted (sd {pred_mean.std():.2f})")
  axes.axvline(metrics.QUALITY_THRESHOLD, color="black", linestyle=":", linewidth=1)
  axes.set(title=f"Mean scores (n={len(predictions)})", xlabel="mean score", ylabel="images")
  axes.legend()
  save(DISTRIBUTIONS_FIGURE, figure)

  figure, axes = plt.subplots(figsize=(5, 5))
  axes.scatter(true_mean, pred_mean, s=6, alpha=0.4)
  low = min(true_mean.min(), pred_mean.min()) - 0.2
  high = max(true_mean.max(), pred_mean.max()) + 0.2
  axes.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = true")
  axes.axvline(metrics.QUALITY_THRESHOLD, color="grey", linestyle=":", linewidth=1)
  axes.axhline(metrics.QUALITY_THRESHOLD, color="grey", linestyle=":", linewidth=1)
  axes.set(xlim=(low, high), ylim=(low, high), xlabel="true mean score",
           ylabel="predicted mean score",
           title=f"LCC {summary['lcc_mean']:.3f}, SRCC {summary['srcc_mean']:.3f}")
  axes.legend(loc="upper left")
  save(SCATTER_FIGURE, figure)

  save(BINS_FIGURE, accuracy_by_bin_figure(by_bin, summary["accuracy"]))
  true_std, pred_std = predictions["true_std"], predictions["pred_std"]
  figure, axes = plt.subplots(figsize=(5, 5))
  axes.scatter(true_std, pred_std, s=6, alpha=0.4)
  low = min(true_std.min(), pred_std.min()) - 0.1
  high = max(true_std.max(), pred_std.max()) + 0.1
  axes.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = true")
  axes.set(xlim=(low, high), ylim=(low, high), xlabel="true standard deviation",
           ylabel="predicted standard deviation",
           title=f"Std: LCC {_number(summary['lcc_std'])}, SRCC {_number(summary['srcc_std'])}")
  axes.legend(loc="upper left")
  save(STD_FIGURE, figure)
  return pngs


def grid_ids(predictions: pd.DataFrame, count: int = GRID_PHOTOS) -> Dict[str, List[int]]:
  """The image ids of each photo grid, by figure: highest and lowest predicted mean, largest errors."""
  by_pred = predictions.sort_values(["pred_mean", "image_id"], ascending=[False, True])
  error = (predictions["pred_mean"] - predictions["true_mean"]).abs()
  by_error = predictions.assign(error=error).sort_values(["error", "image_id"],
                                                          ascending=[False, True])
  return {
      BEST_FIGURE: by_pred["image_id"].head(count).tolist(),
      WORST_FIGURE: by_pred["image_id"].tail(count).iloc[::-1].tolist(),
      ERRORS_FIGURE: by_error["image_id"].head(count).tolist(),
  }


def caption(row) -> str:
  """A photo's caption in the grids: its id, true and predicted mean (and std)."""
  return (f"{int(row.image_id)}\ntrue {row.true_mean:.2f} ± {row.true_std:.2f}\n"
          f"pred {row.pred_mean:.2f} ± {row.pred_std:.2f}")


def _thumbnails(records_dir: str, split: str, image_ids) -> Dict[int, np.ndarray]:
  """The stored images of `image_ids`, from one pass over the split's records."""
  wanted, found = set(int(i) for i in image_ids), {}
  for record in records.read_records(records_dir, split):
    if record.image_id in wanted:
      found[record.image_id] = tf.io.decode_jpeg(record.encoded, channels=3).numpy()
  return found


def _grid_figures(predictions: pd.DataFrame, thumbnails: Dict[int, np.ndarray]
                  ) -> Dict[str, bytes]:
  """Photo grids with true and predicted scores, by file name."""
  plt = figures.pyplot()
  titles = {BEST_FIGURE: "Highest predicted mean scores",
            WORST_FIGURE: "Lowest predicted mean scores",
            ERRORS_FIGURE: "Largest errors of the mean score"}
  rows = predictions.set_index("image_id", drop=False)
  pngs = {}
  for name, image_ids in grid_ids(predictions).items():
    columns = 4
    figure, axes = plt.subplots(2, columns, figsize=(2.4 * columns, 6.2))
    for axis in axes.flat:
      axis.axis("off")
    for axis, image_id in zip(axes.flat, image_ids):
      if image_id in thumbnails:
        axis.imshow(thumbnails[image_id])
      axis.set_title(caption(rows.loc[image_id]), fontsize=8)
    figure.suptitle(titles[name])
    pngs[name] = figures.to_png(figure)
  return pngs


def accuracy_by_bin_figure(by_bin: pd.DataFrame, overall: float):
  """Accuracy (0-100%) per true-score bin, its image count under each bin; empty bins empty."""
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  figure, axes = figures.pyplot().subplots(figsize=(7, 4))
  filled = by_bin[by_bin["images"] > 0]
  bars = axes.bar(filled["bin"], 100 * filled["accuracy"], color="tab:blue")
  axes.bar_label(bars, labels=[f"{value:.0%}" for value in filled["accuracy"]], fontsize=8,
                 padding=2)
  for row in by_bin[by_bin["images"] == 0].itertuples():
    axes.text(row.bin, 2, "no images", rotation=90, ha="center", va="bottom", fontsize=8,
              color="grey")
  axes.set_xticks(by_bin["bin"], [f"{row.scores}\nn={row.images}"
                                  for row in by_bin.itertuples()], fontsize=8)
  axes.axhline(100 * overall, color="black", linestyle="--", linewidth=1,
               label=f"overall {overall:.1%}")
  axes.yaxis.set_major_formatter(ticker.PercentFormatter())
  axes.set(ylim=(0, 100), xlim=(-0.6, len(by_bin) - 0.4),
           xlabel="true mean score bin (n: test images in it)", ylabel="accuracy (threshold 5)")
  axes.set_title("Accuracy by true score", pad=14)
  axes.legend(loc="lower right")
  return figure


def _number(value: float, percent: bool = False) -> str:
  if value is None or np.isnan(value):
    return "n/a"
  return f"{value:.2%}" if percent else f"{value:.3f}"


def report_markdown(summary: dict, by_bin: pd.DataFrame, context: ReportContext) -> str:
  """`report.md`: the metrics, the figures, the bins and the published results."""
  where = f"the `{context.split}` split of `{context.records_dir}`"
  validity = comparison_validity(context)
  lines = ["# NIMA evaluation", ""]
  if model_card.is_synthetic(context.card):
    lines += [f"**This model was trained on the built-in synthetic sample: its scores mean "
              "nothing for real photos, and these figures say only how well it learned the "
              "sample.**", ""]
  lines += [
      f"Model `{context.model_path}` ({context.backbone}, {context.input_size} px input), "
      f"scored on {where}: {summary['count']} images, each stored image resized whole to "
      "the input size, as in evaluation during training.",
      "",
      "## Metrics",
      "",
      "| metric | value |",
      "| --- | --- |",
      f"| accuracy (true and predicted mean scores on the same side of 5) | "
      f"{_number(summary['accuracy'], percent=True)} |",
      f"| EMD (r = 2) | {_number(summary['emd'])} |",
      f"| LCC / SRCC of the mean score | {_number(summary['lcc_mean'])} / "
      f"{_number(summary['srcc_mean'])} |",
      f"| LCC / SRCC of the standard deviation | {_number(summary['lcc_std'])} / "
      f"{_number(summary['srcc_std'])} |",
      "",
      "## Beside the published results",
      "",
      "| model | evaluated on | accuracy | LCC (mean) | SRCC (mean) | EMD "
      "| LCC (std) | SRCC (std) | source | comparable with this run |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
      f"| this run ({context.backbone}) | {where} | {_number(summary['accuracy'], percent=True)} "
      f"| {_number(summary['lcc_mean'])} | {_number(summary['srcc_mean'])} "
      f"| {_number(summary['emd'])} | {_number(summary['lcc_std'])} "
      f"| {_number(summary['srcc_std'])} | | |",
  ]
  lines += [f"| {result.model}: **published** | official AVA test split | "
            f"{_number(result.accuracy, percent=True)} | {_number(result.lcc_mean)} | "
            f"{_number(result.srcc_mean)} | {_number(result.emd)} | {_number(result.lcc_std)} | "
            f"{_number(result.srcc_std)} | {result.source} | {validity} |"
            for result in PUBLISHED]
  lines += [
      "",
      "Published figures are on the official AVA test split (NIMA's from "
      f"{PUBLISHED_SOURCE}; the earlier methods' accuracies as NIMA and the project's seed "
      "list them). They are comparable with this run only when it was trained on AVA and "
      "evaluated on that split (the `test` split of records built from the AVA download).",
      "",
      "## Predicted and true mean scores",
      "",
      f"![Mean scores]({DISTRIBUTIONS_FIGURE})",
      "",
      f"![Predicted against true]({SCATTER_FIGURE})",
      "",
      "## Predicted and true standard deviations",
      "",
      "How spread the ratings are (how much voters disagreed); NIMA predicts it far less "
      "well than the mean.",
      "",
      f"![Predicted against true standard deviation]({STD_FIGURE})",
      "",
      "## Photos",
      "",
      "The stored images, captioned with their id, true and predicted mean ± std.",
      "",
      f"![Highest predicted mean scores]({BEST_FIGURE})",
      "",
      f"![Lowest predicted mean scores]({WORST_FIGURE})",
      "",
      f"![Largest errors of the mean score]({ERRORS_FIGURE})",
      "",
      "## Accuracy by true score",
      "",
      "AVA's mean scores crowd around 5.5: the bins far from it are rare, and a model that "
      "regresses to the average does worst there.",
      "",
      "| true mean score | images | accuracy | mean abs. error of the mean | "
      "average true mean | average predicted mean |",
      "| --- | --- | --- | --- | --- | --- |",
  ]
  lines += [f"| {row.scores} | {row.images} | {_number(row.accuracy, percent=True)} | "
            f"{_number(row.mean_abs_error)} | {_number(row.true_mean)} | "
            f"{_number(row.pred_mean)} |" for row in by_bin.itertuples()]
  lines += ["", f"![Accuracy by true score]({BINS_FIGURE})", ""]
  return "\n".join(lines)


def write_outputs(output_dir: str, predictions: pd.DataFrame, context: ReportContext) -> dict:
  """Writes predictions, metrics, the bins table and the report; returns the metrics."""
  summary = summarize(predictions)
  by_bin = accuracy_by_bin(predictions)
  tf.io.gfile.makedirs(output_dir)
  texts = {
      PREDICTIONS_FILE: predictions.to_csv(index=False),
      METRICS_FILE: json.dumps(summary, indent=2),
      BINS_FILE: by_bin.to_csv(index=False),
      REPORT_FILE: report_markdown(summary, by_bin, context),
  }
  for name, text in texts.items():
    with tf.io.gfile.GFile(os.path.join(output_dir, name), "w") as f:
      f.write(text)
  pngs = _figures(predictions, by_bin, summary)
  shown = {image_id for ids in grid_ids(predictions).values() for image_id in ids}
  pngs.update(_grid_figures(predictions, _thumbnails(context.records_dir, context.split, shown)))
  for name, png in pngs.items():
    with tf.io.gfile.GFile(os.path.join(output_dir, name), "wb") as f:
      f.write(png)
  return summary


def evaluate(scorer: scoring.Scorer, records_dir: str, split: str, output_dir: str,
             batch_size: int = 64) -> dict:
  """Scores the split, writes every output to `output_dir`; returns the metrics."""
  predictions = predict_records(scorer, records_dir, split, batch_size)
  context = ReportContext(model_path=scorer.model_path, backbone=scorer.backbone,
                          input_size=scorer.input_size, records_dir=records_dir, split=split,
                          card=scorer.card)
  return write_outputs(output_dir, predictions, context)


def define_flags() -> None:
  """The command line; `main` needs it, importers (tests, other tools) do not."""
  flags.DEFINE_string(
      "model_dir", None, "Output folder of `python -m nima_tf.train`, or a .keras file "
      "(local or gs://). Default: the sample's run, " + sample.output_dir())
  flags.DEFINE_string("records_dir", None,
                      "Records folder. Default: the records the model was trained on.")
  flags.DEFINE_enum("split", splits.TEST, records.SPLITS, "Split to score.")
  flags.DEFINE_string("output_dir", None,
                      "Where results go. Default: <model_dir>/evaluation/<split>.")
  flags.DEFINE_integer("batch_size", 64, "Images per batch.", lower_bound=1)


def main(argv: List[str]) -> int:
  cli.unexpected_arguments(argv)
  values = flags.FLAGS
  try:
    scorer = scoring.load(values.model_dir or sample.output_dir())
    records_dir = scoring.records_dir_of(scorer, values.records_dir)
  except (FileNotFoundError, ValueError) as error:
    raise cli.Failure(error) from None
  output_dir = values.output_dir or os.path.join(scorer.run_dir, "evaluation", values.split)
  if model_card.is_synthetic(scorer.card):
    print(model_card.SYNTHETIC_WARNING, file=sys.stderr, flush=True)
  try:
    summary = evaluate(scorer, records_dir, values.split, output_dir, values.batch_size)
  except data.EmptySplitError as error:
    print(f"error: {error}", file=sys.stderr, flush=True)
    return cli.USAGE_ERROR
  except dataset_info.ShardError as error:
    raise cli.Failure(error) from None
  print(f"{summary['count']} images: accuracy {summary['accuracy']:.2%}, EMD "
        f"{summary['emd']:.4f}, LCC/SRCC mean {summary['lcc_mean']:.3f}/"
        f"{summary['srcc_mean']:.3f}, std {summary['lcc_std']:.3f}/{summary['srcc_std']:.3f}")
  print(f"Predictions, metrics and report in {output_dir}", flush=True)
  return 0


def run() -> None:
  """The `nima-evaluate` command: `main` with this module's flags."""
  cli.command(main, define_flags)


if __name__ == "__main__":
  run()
