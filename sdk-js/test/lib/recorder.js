// A loopback HTTP server that records requests and answers with whatever the test says.
import http from 'node:http';

export async function startRecorder(respond = () => ({ status: 200, body: '{}' })) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const url = new URL(req.url, 'http://127.0.0.1');
      const record = {
        method: req.method,
        rawUrl: req.url,
        path: url.pathname,
        rawPath: req.url.split('?')[0],
        query: [...url.searchParams],
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(record);
      const answer = await respond(record);
      if (answer.hang) return; // never answer (timeout tests)
      res.writeHead(answer.status, { 'content-type': answer.contentType ?? 'application/json', ...answer.headers });
      res.end(answer.body ?? '');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
