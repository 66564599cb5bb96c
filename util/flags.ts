/** zod schemas for command-line values every subcommand shares. */
import { z } from 'zod';
import { parseHostPort } from '../replica/addr.js';

/** host:port or :port. */
export const AddrFlag = z.string().refine((s) => {
  try {
    parseHostPort(s, 'address');
    return true;
  } catch {
    return false;
  }
}, 'must be host:port or :port');

/** A whole number, at least `min`, from a string. */
export const IntFlag = (min: number) => z.coerce.number().int().min(min);
