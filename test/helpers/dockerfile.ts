import { readFile } from 'node:fs/promises';

/** One instruction of a Dockerfile, continuation lines joined. */
export interface Instruction {
  /** Upper-case keyword: FROM, COPY, RUN, ... */
  op: string;
  /** Everything after the keyword. */
  args: string;
  /** Index of the build stage it belongs to (-1 before the first FROM). */
  stage: number;
}

/** Parses a Dockerfile into instructions (comments and parser directives dropped). */
export async function parseDockerfile(path: string): Promise<Instruction[]> {
  const text = (await readFile(path, 'utf8')).replace(/\\\n/g, ' ');
  const out: Instruction[] = [];
  let stage = -1;
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) continue;
    const m = /^(\S+)\s+(.*)$/.exec(trimmed);
    if (!m) throw new Error(`cannot parse Dockerfile line: ${trimmed}`);
    const op = m[1].toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ op, args: m[2].replace(/\s+/g, ' ').trim(), stage });
  }
  return out;
}

/** The JSON (exec) form of ENTRYPOINT / CMD, or an error for the shell form (which would not receive SIGTERM as PID 1). */
export function execForm(instruction: Instruction | undefined): string[] {
  if (!instruction) throw new Error('instruction missing');
  const parsed: unknown = JSON.parse(instruction.args);
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`${instruction.op} is not in exec form: ${instruction.args}`);
  return parsed;
}

/** `KEY=value` pairs of the ENV instructions of one stage. */
export function envOf(instructions: Instruction[], stage: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of instructions.filter((x) => x.op === 'ENV' && x.stage === stage)) {
    for (const m of i.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)) env[m[1]] = m[2].replace(/^"|"$/g, '');
  }
  return env;
}
