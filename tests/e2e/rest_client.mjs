// A v0.7 REST client in another language: Node.js 20 with nothing but its built-in fetch, FormData and Blob.
// usage: node rest_client.mjs <base url> <api key> <spec id> <image path>
// Lists the public specifications, posts the image as a multipart file, polls the task and prints
// {"public": [ids...], "result": <task data>} as JSON.
import { readFile } from "node:fs/promises";

const [base, key, specId, imagePath] = process.argv.slice(2);
const headers = { "X-API-KEY": key };

async function json(response) {
  const body = await response.json();
  if (!response.ok) throw new Error(`${response.status}: ${JSON.stringify(body)}`);
  return body;
}

const ids = [];
for (let url = `${base}/v0.7/recognition/public/?limit=3`; url; ) {
  const page = await json(await fetch(url, { headers }));
  ids.push(...page.results.map((s) => s.id));
  url = page.next;
}

const form = new FormData();
form.append("inputs[0]image.source", new Blob([await readFile(imagePath)]), "image.png");
form.append("show_discarded", "true");
const { task_id: taskId } = await json(
  await fetch(`${base}/v0.7/recognition/public/${specId}/inference`, { method: "POST", headers, body: form }),
);
let task;
for (let i = 0; i < 200; i++) {
  task = await json(await fetch(`${base}/v0.7/tasks/${taskId}/`, { headers }));
  if (task.status !== "pending") break;
  await new Promise((resolve) => setTimeout(resolve, 50));
}
if (task.status !== "success") throw new Error(`task ended ${task.status}: ${task.error}`);
console.log(JSON.stringify({ public: ids, result: task.data }));
