r"""A REST client of the served NIMA: TF Serving or a Vertex AI endpoint.

  python -m launch.serving_client --url=http://localhost:8501/v1/models/nima:predict a.jpg b.png

Sends the files' bytes, base64-encoded, in TF Serving's row format, the body
Vertex AI prediction takes too:

  {"instances": [{"image_bytes": {"b64": "<base64 of the file>"}}, ...]}

and prints each file's mean score and standard deviation. The response is
`{"predictions": [{"mean": m, "std": s, "distribution": [p1, ..., p10]}, ...]}`
in the files' order. A request fails as a whole when one image is refused; the
server's `error` names the reason first (`too_large: image_bytes[1] is ...`).
Vertex AI needs an access token (`--token=$(gcloud auth print-access-token)`).
See launch/serving.md.
"""

import base64
import json
import re
from typing import List, Optional, Sequence

from absl import app
from absl import flags
import requests

INPUT = "image_bytes"  # The SavedModel's input (nima_tf.export.BYTES_INPUT).
TIMEOUT_SECONDS = 60


def request_body(images: Sequence[bytes]) -> dict:
  """The JSON body scoring encoded images: one instance per image, its bytes in base64."""
  return {"instances": [{INPUT: {"b64": base64.b64encode(image).decode("ascii")}}
                        for image in images]}


def error_reason(message: str) -> str:
  """The reason in a serving error: the SavedModel's own check (`too_large: ...`) if any."""
  found = re.search(r"assertion failed: \[(.*?)\]\s*(\n|$)", message)
  return found.group(1) if found else message.strip()


def predict(url: str, images: Sequence[bytes], token: Optional[str] = None) -> List[dict]:
  """Posts the images to a `:predict` URL; their `{mean, std, distribution}`, in order.

  Raises RuntimeError with the server's error message when it refuses the request.
  """
  headers = {"Authorization": f"Bearer {token}"} if token else {}
  response = requests.post(url, json=request_body(images), headers=headers,
                           timeout=TIMEOUT_SECONDS)
  try:
    answer = response.json()
  except ValueError:
    answer = {"error": response.text[:500]}
  if response.status_code != 200 or "predictions" not in answer:
    raise RuntimeError(f"{url} answered {response.status_code}: "
                       f"{error_reason(str(answer.get('error', answer)))}")
  return answer["predictions"]


flags.DEFINE_string("url", "http://localhost:8501/v1/models/nima:predict",
                    "The :predict URL of TF Serving or of a Vertex AI endpoint.")
flags.DEFINE_string("token", None, "OAuth access token (Vertex AI).")


def main(argv: List[str]) -> None:
  paths = argv[1:]
  if not paths:
    raise app.UsageError("pass the image files to score")
  images = []
  for path in paths:
    with open(path, "rb") as f:
      images.append(f.read())
  try:
    predictions = predict(flags.FLAGS.url, images, flags.FLAGS.token)
  except (RuntimeError, requests.RequestException) as error:
    raise SystemExit(f"error: {error}") from None
  for path, prediction in zip(paths, predictions):
    print(json.dumps({"path": path, "mean": round(prediction["mean"], 4),
                      "std": round(prediction["std"], 4)}))


if __name__ == "__main__":
  app.run(main)
